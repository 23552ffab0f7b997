import pathlib
import re
import typing

import quaterion.dataset as dataset_pkg
from quaterion.dataset import similarity_data_loader


def test_public_names():
    assert sorted(dataset_pkg.__all__) == sorted(
        [
            "SimilarityPairSample",
            "SimilarityGroupSample",
            "SimilarityDataLoader",
            "PairsSimilarityDataLoader",
            "GroupSimilarityDataLoader",
            "SimilarityGroupDataset",
            "GroupCycleBatchSampler",
        ]
    )
    for name in dataset_pkg.__all__:
        assert getattr(dataset_pkg, name).__name__ == name


def test_local_covariant_typevar_no_torch_internal_import():
    assert isinstance(similarity_data_loader.T_co, typing.TypeVar)
    assert similarity_data_loader.T_co.__covariant__
    package_dir = pathlib.Path(dataset_pkg.__file__).parent
    for source in package_dir.glob("*.py"):
        assert not re.search(r"from torch[\w.]* import[^\n]*\bT_co\b", source.read_text()), source
