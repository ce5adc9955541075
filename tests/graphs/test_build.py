import numpy as np
import pytest
import torch
from alignn.torch_graph_builder import batch_torch_graph_pairs, build_pure_torch_graph
from jarvis.core.atoms import Atoms

from tests.conftest import fcc, rocksalt, structures
from tlsearch.errors import UserInputError
from tlsearch.graphs import GraphBuildError, GraphPack, GraphParams, build_arrays, dgl_available


def test_pure_arrays_shapes_and_values():
    g = build_arrays(rocksalt(), GraphParams())
    assert g["z"].tolist() == [11, 17]
    assert len(g["src"]) == len(g["dst"]) == len(g["r"]) == 2 * 12  # 12 neighbours per atom
    assert len(g["lg_src"]) == len(g["lg_dst"]) == len(g["h"]) > 0
    assert np.all(np.abs(g["h"]) <= 1 + 1e-6)
    assert g["lg_src"].max() < len(g["src"])


def test_three_body_cutoff_reduces_triplets():
    full = build_arrays(rocksalt(), GraphParams())
    short = build_arrays(rocksalt(), GraphParams(three_body_cutoff=3.0))
    assert 0 < len(short["h"]) < len(full["h"])


def test_isolated_atom_is_reported():
    lonely = Atoms(lattice_mat=np.eye(3) * 30.0, coords=[[0, 0, 0]], elements=["Cu"], cartesian=False)
    with pytest.raises(GraphBuildError) as exc:
        build_arrays(lonely, GraphParams())
    assert exc.value.reason == "isolated atom"


def test_overlapping_atoms_are_reported():
    crowded = Atoms(lattice_mat=np.eye(3) * 4.0, coords=[[0, 0, 0], [0.01, 0, 0]], elements=["Cu", "Cu"],
                    cartesian=False)
    with pytest.raises(GraphBuildError) as exc:
        build_arrays(crowded, GraphParams())
    assert exc.value.reason == "overlapping atoms"


@pytest.mark.parametrize("kw", [dict(cutoff=0), dict(max_neighbors=0), dict(three_body_cutoff=9.0),
                                dict(builder="nope")])
def test_bad_params_are_user_errors(kw):
    with pytest.raises(UserInputError):
        GraphParams(**kw)


def test_pack_batch_matches_alignn_batching():
    atoms = structures(5)
    graphs = [build_arrays(a, GraphParams()) for a in atoms]
    pack = GraphPack.from_graphs([str(i) for i in range(5)], graphs)
    rows = [3, 0, 4]
    g, lg = pack.batch(rows)
    ref_g, ref_lg = batch_torch_graph_pairs(
        [build_pure_torch_graph(atoms[i], two_body_cutoff=8.0, three_body_cutoff=8.0, max_neighbors=12,
                                use_matscipy_topology=False) for i in rows])
    assert g.num_nodes == ref_g.num_nodes and lg.num_nodes == ref_lg.num_nodes
    assert torch.equal(g.src, ref_g.src) and torch.equal(g.dst, ref_g.dst)
    assert torch.equal(lg.src, ref_lg.src) and torch.equal(lg.dst, ref_lg.dst)
    torch.testing.assert_close(g.edata["r"], ref_g.edata["r"].float())
    torch.testing.assert_close(lg.edata["h"], ref_lg.edata["h"].float())
    torch.testing.assert_close(g.ndata["atom_features"], ref_g.ndata["atom_features"].float())
    assert torch.equal(g.batch_num_nodes, ref_g.batch_num_nodes)
    assert torch.equal(lg.batch_num_edges, ref_lg.batch_num_edges)


def test_pack_subset_and_graph_round_trip(tmp_path):
    graphs = [build_arrays(a, GraphParams()) for a in structures(4)]
    pack = GraphPack.from_graphs(list("abcd"), graphs)
    sub = pack.subset([2, 0])
    assert sub.keys == ["c", "a"]
    for name, arr in graphs[2].items():
        np.testing.assert_array_equal(sub.graph(0)[name], arr)
    pack.save(tmp_path / "p.tlg")
    loaded, header = GraphPack.load(tmp_path / "p.tlg")
    assert loaded.keys == list("abcd")
    for name, arr in graphs[3].items():
        np.testing.assert_array_equal(loaded.graph(3)[name], arr)


@pytest.mark.skipif(not dgl_available(), reason="dgl extra not installed")
def test_dgl_builder_gives_same_layout():
    g = build_arrays(fcc(), GraphParams(builder="dgl"))
    assert set(g) == {"z", "src", "dst", "r", "lg_src", "lg_dst", "h"}
    assert len(g["src"]) >= 12 and len(g["h"]) > 0
    lengths = np.linalg.norm(g["r"], axis=1)
    assert lengths.min() == pytest.approx(3.61 / np.sqrt(2), rel=1e-3)  # fcc nearest-neighbour distance
