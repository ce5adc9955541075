"""Checks of a study's spec against the data it names (they load datasets, so they live apart from the schema)."""

from __future__ import annotations

from typing import Any

from tlsearch.errors import UserInputError
from tlsearch.search.spec import SearchSpec


def check_datasets(spec: SearchSpec, where: str = "space.yaml", graphs: bool = False) -> list[dict[str, Any]]:
    """Every dataset the spec names exists and has its property with at least one finite value, so that a
    typo in a reference or a property fails before a study starts instead of failing every trial. The
    references are checked first (sources, dataset names, parameters, files: nothing is loaded), then each
    dataset is loaded once (parsed into the cache, where the trials find it again). Returns the data quality
    of each use (``data.quality.quality`` plus its ``role``, the spec field, and ``label``), in spec order.
    ``graphs`` (``tlsearch run``): also build each use's graphs as the trials will (:func:`graph_failures`), so
    that the structures whose graph fails are counted and listed with their reason among the skipped entries."""
    from tlsearch.data._registry import as_ref, get_source, load_dataset
    from tlsearch.data.quality import quality

    d = spec.data
    fields: list[tuple[str, Any]] = ([("data.target", d.target)] if d.target is not None else
                                     [(f"data.targets.{i}", t) for i, t in enumerate(d.targets)])
    targets = {loc for loc, _ in fields}
    for section in ("pretrain_sources", "mpt_properties", "eval_sets"):
        fields += [(f"data.{section}.{i}", t) for i, t in enumerate(getattr(d, section))
                   if not getattr(t, "checkpoint", None)]  # checkpoints: check_checkpoints (pt_files.py)
    by_dataset: dict[str, list[tuple[str, Any]]] = {}
    for loc, t in fields:
        try:
            ref = as_ref(t.dataset)
            get_source(ref.source).check_ref(ref)
        except UserInputError as exc:
            raise UserInputError(f"{where}: {loc}: {exc}") from None
        by_dataset.setdefault(t.dataset, []).append((loc, t))
    found: dict[str, dict[str, Any]] = {}
    loaded: dict[str, Any] = {}  # reference -> its dataset, loaded once for every check here
    failures: dict[str, dict[str, tuple[str, str]]] = {}  # property -> its graph failures (one dataset at a time)
    for ref_text, uses in by_dataset.items():
        loc = uses[0][0]
        failures.clear()
        try:
            ds = loaded[ref_text] = load_dataset(ref_text)
            for loc, t in uses:
                ds.with_property(t.property)
                if graphs and t.property not in failures:
                    failures[t.property] = graph_failures(spec, ds, t.property)
                held_out = (d.test_fraction, d.split_seed) if loc in targets else (None, 0)
                # a label written once names every entry of that data (DataSpec.names)
                found[loc] = {"role": loc, "label": getattr(t, "name", None) or d.names().get(t.label),
                              **quality(ds, t.property, *held_out, graph_failures=failures.get(t.property))}
        except UserInputError as exc:
            raise UserInputError(f"{where}: {loc}: {exc}") from None
    check_pt_sample(spec, loaded, where)
    return [found[loc] for loc, _ in fields]


def graph_failures(spec: SearchSpec, ds: Any, prop: str) -> dict[str, tuple[str, str]]:
    """Record id -> (reason, detail) of the entries of ``ds`` with a finite ``prop`` whose graph cannot be built
    with the spec's graph settings. The graphs are built as a trial builds them (``prepared.prepare``: the same
    structures, parameters, cache and graph store), so the trials find them in the cache; a trial leaves these
    entries out. A PT source sampled by ``data.pt_sample_size`` is checked whole: any entry may be drawn."""
    from tlsearch.graphs import GraphCache

    records = ds.with_property(prop).records
    # the trials' cache is $TLSEARCH_CACHE (runner._tuner), the default root here
    gs = GraphCache(spec.graph.params(), store=spec.cluster.graph_store).get([r.atoms for r in records])
    return {records[i].id: failure for i, failure in sorted(gs.failures.items())}


def check_pt_sample(spec: SearchSpec, loaded: dict[str, Any], where: str = "space.yaml") -> None:
    """``data.pt_sample_size`` is not more than a PT source (or all MPT properties together) has outside its
    held-out test set: otherwise every transfer trial fails with SampleSizeError when it pre-trains (an upper
    bound: PT also leaves out the targets' test structures, so a sample just under it can still be short).
    ``loaded``: reference -> dataset, as check_datasets loaded them; the split is load_split's."""
    from tlsearch.data.splits import split_pool

    d, n = spec.data, spec.data.pt_sample_size
    if n == "all":
        return
    pools: dict[tuple[str, str], set[str]] = {}

    def pool(t: Any) -> set[str]:
        if (t.dataset, t.property) not in pools:
            ds = loaded[t.dataset].with_property(t.property)
            split = split_pool(ds.ids, d.test_fraction, d.split_seed)
            pools[t.dataset, t.property] = {f"{ds.ref}#{ds.ids[i]}" for i in split.pool}
        return pools[t.dataset, t.property]

    fix = "fix: data.pt_sample_size: all, or a smaller sample"
    if "finetune" in spec.search.strategy:
        for i, t in enumerate(d.pretrain_sources):
            if not getattr(t, "checkpoint", None) and n > len(pool(t)):
                raise UserInputError(f"{where}: data.pt_sample_size: {n} is more than the {len(pool(t))} structures "
                                     f"data.pretrain_sources.{i} ({t.label}) has outside its held-out test set; {fix}")
    if "mpt" in spec.search.strategy and d.mpt_properties:
        total = len(set().union(*(pool(t) for t in d.mpt_properties)))
        if n > total:
            raise UserInputError(f"{where}: data.pt_sample_size: {n} is more than the {total} structures all of "
                                 f"data.mpt_properties have together outside their held-out test sets; {fix}")


def check_environment(spec: SearchSpec, where: str = "space.yaml", address: str | None = None) -> None:
    """What every trial would need from the machine: the dgl extra for the classic model or graph builder, and
    a GPU when trials ask for one on a local Ray (a local Ray without one never schedules them: the study
    would wait forever). On a cluster (``address``) the GPUs are on the workers, so they are not checked here."""
    from tlsearch.graphs import dgl_available

    uses = [f for f, v in (("search.architecture.backend", spec.search.architecture.backend),
                           ("graph.builder", spec.graph.builder)) if v == "dgl"]
    if uses and not dgl_available():
        raise UserInputError(f"{where}: {uses[0]}: 'dgl' needs the dgl extra, which is not installed here; fix: "
                             "pip install -c constraints.txt 'tlsearch[dgl]', or use 'pure'")
    gpus = spec.resources.gpus_per_trial
    if gpus > 0 and (address or spec.cluster.address) is None and not _local_gpus():
        raise UserInputError(f"{where}: resources.gpus_per_trial: {gpus:g} but this machine has no GPU that torch "
                             "can use, so a local Ray would never start a trial; fix: gpus_per_trial: 0, or run on "
                             "a cluster with GPUs (cluster.address or --address)")


def check_storage(spec: SearchSpec, where: str = "space.yaml", storage: str | None = None) -> None:
    """Object-store locations (``storage``, ``cluster.pt_store``, ``cluster.graph_store``) must be reachable
    before anything runs."""
    from tlsearch import remote
    from tlsearch.errors import StorageError

    for field, uri in (("storage" if storage is None else "--storage", storage or spec.storage),
                       ("cluster.pt_store", spec.cluster.pt_store),
                       ("cluster.graph_store", spec.cluster.graph_store)):
        if remote.is_remote(uri):
            try:
                remote.check(uri)
            except StorageError as exc:
                raise StorageError(f"{where}: {field}: {exc}") from None


def _local_gpus() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0
