"""ERC loaders on files built in the test, one malformed file per format."""

from __future__ import annotations

import numpy as np
import pytest

from deepmlf.data.erc import CLASS_ORDERS, detect_source, load_erc, repair_text
from deepmlf.data.erc import testing as T
from deepmlf.errors import DataError

MELD = CLASS_ORDERS["meld-cosmic"]


def test_repair_text_maps_c1_through_cp1252():
    assert repair_text("company\x92s") == "company’s"
    assert repair_text("\x93quoted\x94") == "“quoted”"
    assert repair_text("plain ’") == "plain ’"


def test_meld_csv_splits_order_speakers_and_repair(tmp_path):
    data = load_erc(T.write_meld_csvs(tmp_path / "meld"))
    assert data.source == "meld-csv" and list(data.splits) == ["train", "valid", "test"]
    assert data.classes == MELD
    train = data["train"]
    assert [c.dialogue_id for c in train] == ["0", "1"]
    d1 = train[1]
    assert d1.utterance_ids == ["dia1_utt0", "dia1_utt1", "dia1_utt2"]  # re-ordered by Utterance_ID
    assert d1.texts == ["Okay.", "Hey!", "Get out!"]
    assert [MELD[y] for y in d1.labels] == ["neutral", "joy", "anger"]
    assert train[0].texts[0] == "Oh my God, he’s lost it."
    assert any("repaired 2 C1" in n for n in data.notes)
    vocab = data.speaker_vocab  # global, order of first appearance, train first
    assert list(vocab)[:3] == ["Phoebe", "Monica", "Joey"]
    assert data.speaker_ids(d1) == [0, 2, 1]
    assert data.summary()["splits"]["train"]["labels"]["anger"] == 1


def test_meld_csv_per_dialogue_speakers_and_other_order(tmp_path):
    data = load_erc(T.write_meld_csvs(tmp_path / "m"), speaker_mode="per_dialogue", classes="meld-alphabetical")
    d1 = data["train"][1]
    assert data.speaker_ids(d1) == [0, 1, 2]
    assert [data.classes[y] for y in d1.labels] == ["neutral", "joy", "anger"]
    assert d1.labels == [4, 3, 0]


def test_meld_csv_malformed(tmp_path):
    folder = T.write_meld_csvs(tmp_path / "bad")
    f = folder / "dev_sent_emo.csv"
    f.write_text(T.MELD_HEADER + '1,"Hi",Ross,bored,neutral,0,0,1,1,"0","0"\n')
    with pytest.raises(DataError, match=r"dev_sent_emo.csv, line 2, column Emotion: label 'bored' is not one of"):
        load_erc(folder)
    f.write_text("Utterance,Speaker\nHi,Ross\n")
    with pytest.raises(DataError, match=r"dev_sent_emo.csv: missing column\(s\) Emotion, Dialogue_ID, Utterance_ID"):
        load_erc(folder)
    f.write_text(T.MELD_HEADER + '1,"a",R,joy,n,0,0,1,1,"0","0"\n2,"b",R,joy,n,0,0,1,1,"0","0"\n')
    with pytest.raises(DataError, match=r"line 3: Dialogue_ID 0 has Utterance_ID 0 twice"):
        load_erc(folder)


def test_iemocap_csv_names_and_speaker_letters(tmp_path):
    folder = tmp_path / "iemocap"
    folder.mkdir()
    head = "Utterance,Speaker,Dialogue_ID,Start_Time,End_Time,Wav_Path,Video_Path,Emotion,Utterance_ID\n"
    for split in ("train", "dev", "test"):
        (folder / f"IEMOCAP_{split}.csv").write_text(
            head + "hi,Ses01F_impro01_F000,Ses01F_impro01,0,1,a,b,hap,0\nno,Ses01F_impro01_M000,Ses01F_impro01,1,2,a,b,fru,1\n")
    data = load_erc(folder)
    assert data.classes == CLASS_ORDERS["iemocap-cosmic"] and data.speaker_mode == "per_dialogue"
    conv = data["train"][0]
    assert conv.speakers == ["F", "M"] and [data.classes[y] for y in conv.labels] == ["hap", "fru"]


def test_cosmic_meld_and_iemocap(tmp_path):
    data = load_erc(T.write_pickle(tmp_path / "meld.pkl", T.cosmic_meld_list()))
    assert detect_source(tmp_path / "meld.pkl") == "cosmic-pkl"
    assert [c.dialogue_id for c in data["train"]] == ["0", "1"] and [c.dialogue_id for c in data["valid"]] == ["2"]
    c0 = data["train"][0]
    assert c0.speakers == ["speaker0", "speaker1"] and c0.texts == ["Hi.", "I’m happy!"]
    assert [MELD[y] for y in c0.labels] == ["neutral", "joy"]
    alpha = load_erc(tmp_path / "meld.pkl", classes="meld-alphabetical")
    assert [alpha.classes[y] for y in alpha["train"][0].labels] == ["neutral", "joy"]
    iem = load_erc(T.write_pickle(tmp_path / "iemocap.pkl", T.cosmic_iemocap_list()))
    assert [iem.classes[y] for y in iem["train"][0].labels] == ["hap", "sad", "neu"]
    assert iem.speaker_ids(iem["train"][0]) == [0, 1, 0]


def test_cosmic_malformed_names_position(tmp_path):
    bad = T.cosmic_meld_list()
    del bad[3][1]  # sentences of dialogue 1 missing
    with pytest.raises(DataError, match=r"list position 3 \(sentences\) has no entry for dialogue 1"):
        load_erc(T.write_pickle(tmp_path / "b.pkl", bad))
    short = T.cosmic_meld_list()
    short[1][0] = [0]
    with pytest.raises(DataError, match=r"list position 1 \(labels\)\[0\] has 1 labels for 2 speakers"):
        load_erc(T.write_pickle(tmp_path / "c.pkl", short))


@pytest.mark.parametrize("meld", [False, True])
def test_dialoguernn_tuples(tmp_path, meld):
    path = T.write_pickle(tmp_path / "f.pkl", T.dialoguernn_tuple(meld=meld))
    data = load_erc(path, label_order="iemocap-cosmic", valid_fraction=0.5)
    assert data.source == "dialoguernn-pkl"
    assert [c.dialogue_id for c in data["train"]] == ["d1"] and [c.dialogue_id for c in data["valid"]] == ["d2"]
    c = data["train"][0]
    assert {m: f.shape for m, f in c.features.items()} == {"text": (3, 4), "audio": (3, 3), "video": (3, 2)}
    assert c.texts[0] == "utterance 0 of d1"
    assert data.speaker_ids(c) == [0, 1, 0]


def test_dialoguernn_malformed(tmp_path):
    with pytest.raises(DataError, match=r"a tuple of length 8; expected length 9 or 10 or 12 or 13"):
        load_erc(T.write_pickle(tmp_path / "a.pkl", T.dialoguernn_tuple()[:8]), source="dialoguernn-pkl")
    bad = list(T.dialoguernn_tuple())
    bad[4] = dict(bad[4])
    bad[4]["d2"] = bad[4]["d2"][:1]
    with pytest.raises(DataError, match=r"tuple position 4 \(audio\)\['d2'\]: 1 feature rows for 2 utterances"):
        load_erc(T.write_pickle(tmp_path / "b.pkl", tuple(bad)))
    lab = list(T.dialoguernn_tuple())
    lab[2] = {**lab[2], "d1": [0, 9, 1]}
    with pytest.raises(DataError, match=r"tuple position 2 \(labels\)\['d1'\]\[1\]: label 9 is outside 0..5"):
        load_erc(T.write_pickle(tmp_path / "c.pkl", tuple(lab)))


def test_magtkd_dict(tmp_path):
    data = load_erc(T.write_pickle(tmp_path / "features.pkl", T.magtkd_dict()))
    assert data.source == "magtkd-pkl" and set(data.splits) == {"train", "valid", "test"}
    c = data["train"][0]
    assert set(c.features) == {"text", "audio", "video", "audio_kd", "video_kd"}
    assert c.utterance_ids == ["dia0_utt0", "dia0_utt1", "dia0_utt2"]
    assert [data.classes[y] for y in c.labels] == ["anger", "neutral", "surprise"]
    cosmic = load_erc(tmp_path / "features.pkl", classes="meld-cosmic")
    assert [cosmic.classes[y] for y in cosmic["train"][0].labels] == ["anger", "neutral", "surprise"]


def test_magtkd_malformed(tmp_path):
    obj = T.magtkd_dict()
    del obj["labels"]
    with pytest.raises(DataError, match=r"missing key\(s\) labels of MAGTKD's first-stage dict"):
        load_erc(T.write_pickle(tmp_path / "a.pkl", obj))
    obj = T.magtkd_dict()
    obj["audio_kd"][1] = obj["audio_kd"][1][:1]
    with pytest.raises(DataError, match=r"key 'audio_kd'\[1\]: 1 feature rows for 2 utterances"):
        load_erc(T.write_pickle(tmp_path / "b.pkl", obj))


def test_merbench(tmp_path):
    data = load_erc(T.write_merbench(tmp_path / "mer"))
    assert data.classes == CLASS_ORDERS["meld-merbench"]
    t = data["test"][0]
    assert t.utterance_ids == ["test_dia0_utt0", "test_dia0_utt1"]
    assert [data.classes[y] for y in t.labels] == ["fear", "surprise"]
    assert t.texts == ["text of test_dia0_utt0", "text of test_dia0_utt1"] and t.speakers == ["unknown"] * 2


def test_merbench_malformed(tmp_path):
    folder = tmp_path / "bad"
    folder.mkdir()
    np.savez(folder / "label.npz", train_corpus=np.array({}, dtype=object))
    with pytest.raises(DataError, match=r"label.npz: missing key\(s\) val_corpus, test_corpus"):
        load_erc(folder / "label.npz")
    np.savez(folder / "label.npz", **{k: np.array({"x": {"emo": 0}}, dtype=object)
                                      for k in ("train_corpus", "val_corpus", "test_corpus")})
    with pytest.raises(DataError, match=r"key 'train_corpus', name 'x' is not like 'train_dia0_utt0'"):
        load_erc(folder / "label.npz")


def test_unknown_pickle_and_missing_path(tmp_path):
    with pytest.raises(DataError, match=r"not a known ERC format .* a list of length 3"):
        load_erc(T.write_pickle(tmp_path / "x.pkl", [1, 2, 3]))
    with pytest.raises(DataError, match="no such file"):
        load_erc(tmp_path / "nope.pkl")
    (tmp_path / "junk.pkl").write_bytes(b"not a pickle")
    with pytest.raises(DataError, match="not a readable pickle"):
        load_erc(tmp_path / "junk.pkl")


def test_cli_inspect(tmp_path):
    from typer.testing import CliRunner

    from deepmlf.cli import app

    folder = T.write_meld_csvs(tmp_path / "meld")
    res = CliRunner().invoke(app, ["erc", "data", "inspect", str(folder), "--json"])
    assert res.exit_code == 0, res.output
    import json

    out = json.loads(res.output)
    assert out["splits"]["train"]["dialogues"] == 2 and out["splits"]["train"]["utterances"] == 5
    assert out["splits"]["test"]["labels"]["fear"] == 1
    res = CliRunner().invoke(app, ["erc", "data", "inspect", str(tmp_path / "none.pkl")])
    assert res.exit_code == 2 and "no such file" in res.output


@pytest.mark.skipif(not __import__("pathlib").Path("/work/shared/data/meld/train_sent_emo.csv").exists(),
                    reason="real MELD (shared/data/meld) absent")
def test_real_meld_counts():
    data = load_erc("/work/shared/data/meld")
    s = data.summary()["splits"]
    assert [(s[k]["utterances"], s[k]["dialogues"]) for k in ("train", "valid", "test")] == \
        [(9989, 1038), (1109, 114), (2610, 280)]
