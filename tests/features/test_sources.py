"""What `features extract` accepts as input, and the clear errors for input it cannot use."""

from __future__ import annotations

import pytest

from deepmlf.errors import DataError
from deepmlf.features.sources import discover, read_raw_layout


def _raw(tmp_path, rows, header="video_id,clip_id,text,label,mode", clips=(("v1", "1"), ("v1", "2"), ("v2", "7"))):
    for v, c in clips:
        (tmp_path / "Raw" / v).mkdir(parents=True, exist_ok=True)
        (tmp_path / "Raw" / v / f"{c}.mp4").write_bytes(b"x")
    (tmp_path / "label.csv").write_text(header + "\n" + "\n".join(rows) + "\n")
    return tmp_path


def test_raw_layout_reads_splits_labels_texts_and_optional_unimodal_labels(tmp_path):
    root = _raw(tmp_path, ["v1,1,so good,1.5,train,1,0.5,0", "v1,2,,-0.5,valid,-1,0,0", "v2,7,meh,0,test,0,0,1"],
                header="video_id,clip_id,text,label,mode,label_T,label_A,label_V")
    clips, layout = discover([root])
    assert layout == "raw" and [c.id for c in clips] == ["v1$_$1", "v1$_$2", "v2$_$7"]
    assert [c.split for c in clips] == ["train", "valid", "test"] and [c.label for c in clips] == [1.5, -0.5, 0.0]
    assert clips[0].text == "so good" and clips[1].text is None  # empty cell: speech recognition fills it
    assert dict(clips[0].modality_labels) == {"T": 1.0, "A": 0.5, "V": 0.0}


def test_label_csv_missing_a_column_names_it(tmp_path):
    root = _raw(tmp_path, ["v1,1,hi,train"], header="video_id,clip_id,text,mode")
    with pytest.raises(DataError, match=r"label.csv: missing column 'label'; expected columns video_id, clip_id, "
                                        r"text, label, mode; found video_id, clip_id, text, mode"):
        read_raw_layout(root)


def test_every_bad_row_is_reported_before_anything_is_extracted(tmp_path):
    root = _raw(tmp_path, ["v1,1,a,x,train", "v1,2,b,1,dev", "v1,1,c,1,test", "v9,3,d,1,test"])
    with pytest.raises(DataError) as e:
        read_raw_layout(root)
    msg = str(e.value)
    assert "4 problem(s), nothing extracted" in msg
    assert "line 2 (video_id='v1', clip_id='1'): label 'x' is not a finite number" in msg
    assert "line 3 (video_id='v1', clip_id='2'): mode 'dev'; expected one of train, valid, test" in msg
    assert "line 4 (video_id='v1', clip_id='1'): same video_id/clip_id as line 2" in msg
    assert "line 5 (video_id='v9', clip_id='3'): no clip Raw/v9/3." in msg


def test_empty_folder_and_missing_path(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"empty: no media files found \(looked for .mp4"):
        discover([tmp_path / "empty"])
    with pytest.raises(DataError, match="nope: no such file or folder"):
        discover([tmp_path / "nope"])
    with pytest.raises(DataError, match="--split 'dev'"):
        discover([tmp_path], split="dev")


def test_plain_folder_gives_unlabelled_clips_named_folder_and_stem(tmp_path):
    for p in ("a/x.mp4", "a/y.MKV", "b/x.mp4", "notes.txt"):
        (tmp_path / p).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / p).write_bytes(b"x")
    clips, layout = discover([tmp_path], split="valid")
    assert layout == "files" and [c.id for c in clips] == ["a$_$x", "a$_$y", "b$_$x"]
    assert {c.split for c in clips} == {"valid"} and all(c.label is None and c.text is None for c in clips)
