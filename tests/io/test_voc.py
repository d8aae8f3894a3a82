"""PASCAL VOC box files, read by a parser that refuses DTDs and entities."""

import pytest

from lidplug.io import read_voc_boxes

VOC = """<annotation><size><width>512</width><height>400</height><depth>1</depth></size>
<object><name>A</name><bndbox><xmin>290</xmin><ymin>305</ymin><xmax>338</xmax><ymax>378</ymax>
</bndbox></object><object><name>B</name><bndbox><xmin>10.5</xmin><ymin>20</ymin>
<xmax>30</xmax><ymax>40</ymax></bndbox></object></annotation>"""


def test_boxes_names_and_size(tmp_path):
    path = tmp_path / "a.xml"
    path.write_text(VOC)
    voc = read_voc_boxes(path)
    assert voc.boxes == [[290, 305, 338, 378], [10.5, 20, 30, 40]]
    assert voc.names == ["A", "B"] and voc.size == (400, 512)
    assert read_voc_boxes(path, inclusive=True).boxes[0] == [290, 305, 339, 379]


@pytest.mark.parametrize(("text", "match"), [
    ('<?xml version="1.0"?><!DOCTYPE a [<!ENTITY x "xx"><!ENTITY y "&x;&x;&x;&x;">]>'
     "<annotation>&y;</annotation>", "without DTD or entities"),
    ('<?xml version="1.0"?><!DOCTYPE a [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
     "<annotation>&e;</annotation>", "without DTD or entities"),
    ("<annotation><object>", "well-formed"),
    ("<boxes/>", "expected an <annotation> root element, got <boxes>"),
    ("<annotation><object><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>1</xmax><ymax>5</ymax>"
     "</bndbox></object></annotation>", r"xmin < xmax"),
    ("<annotation><object><bndbox><xmin>a</xmin></bndbox></object></annotation>",
     r"object\[0\]/bndbox/xmin, got 'a'"),
    ("<annotation><object><bndbox><xmin>nan</xmin><ymin>1</ymin><xmax>3</xmax><ymax>5</ymax>"
     "</bndbox></object></annotation>", "expected a number"),
])
def test_bad_files_are_refused_naming_the_file(tmp_path, text, match):
    path = tmp_path / "bad.xml"
    path.write_text(text)
    with pytest.raises(ValueError, match=match) as info:
        read_voc_boxes(path)
    assert "bad.xml" in str(info.value)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing there"):
        read_voc_boxes(tmp_path / "none.xml")
