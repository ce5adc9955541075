import numpy as np
from jarvis.core.atoms import Atoms

from tlsearch.data import load_dataset
from tlsearch.data.sampling import draw_sample
from tlsearch.data.splits import train_val_split
from tlsearch.graphs import GraphParams
from tlsearch.prepared import prepare


def test_prepare_emt_end_to_end():
    prep = prepare("emt:alloys?n=40&seed=2", prop="bulk_modulus")
    assert len(prep) == 40 and not prep.graphs.failures
    assert len(prep.split.test) == 4 and len(prep.split.pool) == 36
    assert not set(prep.split.test) & set(prep.split.pool)
    sample = draw_sample(prep.split.pool, 20, "stratified", seed=1, targets=prep.values("bulk_modulus"))
    train, val = train_val_split(sample, 0.1, seed=1)
    assert len(train) == 18 and len(val) == 2 and not set(sample) & set(prep.split.test)
    g, lg = prep.batch(train[:8])
    assert g.batch_size == 8 and lg.num_nodes == g.num_edges
    assert prep.graph_stats()["n_edges"] > 0


def test_test_set_does_not_move_when_graph_params_change():
    ref = "emt:alloys?n=30&seed=4"
    ids = lambda p: {p.dataset.records[i].id for i in p.split.test}  # noqa: E731
    a = prepare(ref, GraphParams(), prop="energy_per_atom")
    b = prepare(ref, GraphParams(cutoff=6.0, max_neighbors=8), prop="energy_per_atom")
    assert ids(a) == ids(b)


def test_graph_failures_are_skipped_with_reason(tmp_path):
    folder = tmp_path / "crystals"
    folder.mkdir()
    ok = Atoms(lattice_mat=np.eye(3) * 3.6, coords=[[0, 0, 0]], elements=["Cu"], cartesian=False)
    lonely = Atoms(lattice_mat=np.eye(3) * 30.0, coords=[[0, 0, 0]], elements=["Cu"], cartesian=False)
    from jarvis.io.vasp.inputs import Poscar

    lines = []
    for i in range(6):
        name = f"s{i}.vasp"
        Poscar(lonely if i == 5 else ok).write_file(str(folder / name))
        lines.append(f"{name},{i * 0.1}")
    (folder / "id_prop.csv").write_text("\n".join(lines) + "\n")
    prep = prepare(f"folder:{folder}", prop="target")
    assert len(prep) == 5
    assert [(s.id, s.reason) for s in prep.skipped] == [("s5.vasp", "isolated atom")]
    assert len(load_dataset(f"folder:{folder}")) == 6  # the dataset itself keeps it; only graphs fail
