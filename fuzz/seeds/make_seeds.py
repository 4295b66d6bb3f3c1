#!/usr/bin/env python3
"""Writes the checked-in seed corpora of fuzz/corpus/<target>/ (except the JPEG seeds, made by
make_jpeg_seeds.cpp, and the shipped yolov3-tiny.cfg copied as a cfg seed). Deterministic: rerun it
after changing a format and commit the result. Usage: fuzz/seeds/make_seeds.py [corpus folder]"""
import json
import os
import shutil
import struct
import sys
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "fuzz", "corpus")


def put(target, name, data):
    d = os.path.join(OUT, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# ---- rg::Json
put("fuzz_json", "object", '{"a": [1, 2.5, -3e10, true, false, null], "b": {"c": "x\\u00e9\\n"}, "a": 0}')
put("fuzz_json", "numbers", "[0, -0, 9007199254740993, 18446744073709551615, 1e400, -1.5e-320, 123456789012345678901]")
put("fuzz_json", "nested", "[[[[[[[[[[{}]]]]]]]]]]")
put("fuzz_json", "string", '"\\ud83d\\ude00 \\" \\\\ \\/ \\b\\f\\r\\t"')
put("fuzz_json", "header", '{"__metadata__":{"format":"pt"},"w":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]}}')
put("fuzz_json", "broken", '{"a": [1, 2,, ]')


# ---- safetensors: mode byte 0 = the file as is, 1 = header text \0 data section
def safetensors(tensors, metadata=None, raw=True):
    header, data = {}, b""
    if metadata:
        header["__metadata__"] = metadata
    for name, dtype, shape, payload in tensors:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(payload)]}
        data += payload
    h = json.dumps(header, separators=(",", ":")).encode()
    if raw:
        h += b" " * ((8 - len(h) % 8) % 8)
        return b"\x00" + struct.pack("<Q", len(h)) + h + data
    return b"\x01" + h + b"\x00" + data


f32 = struct.pack("<6f", 1, -2, 3.5, 0, float("inf"), 1e-3)
put("fuzz_safetensors", "two_tensors", safetensors(
    [("w", "F32", [2, 3], f32), ("b", "I64", [2], struct.pack("<2q", 7, -1))], {"epoch": "3", "format": "pt"}))
put("fuzz_safetensors", "dtypes_split", safetensors(
    [("h", "F16", [2], b"\x00\x3c\x00\xc0"), ("bf", "BF16", [1], b"\x80\x3f"), ("d", "F64", [1], struct.pack("<d", 2.0)),
     ("i", "I32", [1, 1], struct.pack("<i", -5)), ("u", "U8", [3], b"\x01\x02\xff"), ("m", "BOOL", [2], b"\x00\x01"),
     ("e", "F32", [0, 4], b"")], raw=False))
put("fuzz_safetensors", "scalar_split", safetensors([("s", "F32", [], struct.pack("<f", 4.0))], raw=False))
put("fuzz_safetensors", "empty_split", b"\x01{}\x00")

# ---- darknet cfg: a small network using every layer type, and variants
SMALL_CFG = open(os.path.join(HERE, "small.cfg")).read()
put("fuzz_darknet_cfg", "small.cfg", SMALL_CFG)
shutil.copy(os.path.join(ROOT, "models", "cfg", "yolov3-tiny.cfg"), os.path.join(OUT, "fuzz_darknet_cfg", "yolov3-tiny.cfg"))
put("fuzz_darknet_cfg", "route_groups.cfg", """[net]
width=64
height=64
channels=1
policy=steps
steps=10,20
scales=.1,.1

[conv]
filters=8
size=3
stride=1
pad=1
activation=swish

[route]
layers=-1
groups=2
group_id=1

[max]
size=3
stride=2

[convolutional]
filters=18 # (1 + 5) * 3
size=1
activation=logistic

[yolo]
anchors=10,13,  16,30,  33,23,
classes=1
iou_loss=ciou
scale_x_y=1.05
""")

# ---- darknet .weights for small.cfg: 124 + 18 + 348 + 231 floats in layers 0, 2, 3, 7
floats = [i * 0.001 - 0.3 for i in range(721)]
payload = struct.pack("<721f", *floats)
put("fuzz_darknet_weights", "v025_u64_seen", struct.pack("<iiiQ", 0, 2, 5, 123456) + payload)
put("fuzz_darknet_weights", "v010_u32_seen", struct.pack("<iiiI", 0, 1, 0, 99) + payload)
put("fuzz_darknet_weights", "first_4_layers", struct.pack("<iiiQ", 0, 2, 5, 0) + payload[:4 * 490])
put("fuzz_darknet_weights", "truncated", struct.pack("<iiiQ", 0, 2, 5, 0) + payload[:1000])

# ---- YOLO label lines (the label file of a 32x24 image, 3 classes)
put("fuzz_yolo_labels", "boxes", "0 0.5 0.5 0.25 0.5\n2 0.1 0.2 0.1 0.1\n1 0.99 0.5 0.05 0.2\n")
put("fuzz_yolo_labels", "polygon", "1 0.1 0.1 0.4 0.1 0.4 0.5 0.1 0.5\n")
put("fuzz_yolo_labels", "problems", "3 0.5 0.5 0.1 0.1\n0 0.5 0.5 0 0.1\n0 0.5 nan 0.1 0.1\n0 1.5 0.5 0.1 0.1\n"
    "0 0.5 0.5 0.25 0.5\n0 0.5 0.5 0.25 0.5\n1.5 0.5 0.5 0.1 0.1\n2 0.5 0.5 0.1\n\r\n  \t\n")

# ---- data.yaml and hyperparameter yaml
put("fuzz_data_yaml", "names_list.yaml", "path: ../datasets/coco8\ntrain: images/train\nval: images/val\n"
    "names: [person, bicycle, car]\n")
put("fuzz_data_yaml", "names_map.yaml", "train: [a/images, b/list.txt]\nval: ./val.txt\ntest:\nnc: 2\n"
    "names:\n  0: cat\n  1: dog\ndownload: https://example.com/x.zip\n")
put("fuzz_data_yaml", "nc_only.yaml", "path: /data/voc\nval: images/val\nnc: 4\n")
put("fuzz_data_yaml", "hyp.yaml", "lr0: 0.01\nhsv_h: 0.015\nhsv_s: 0.7\nhsv_v: 0.4\ndegrees: 0.0\ntranslate: 0.1\n"
    "scale: 0.5\nshear: 0.0\nperspective: 0.0\nflipud: 0.0\nfliplr: 0.5\nmosaic: 1.0\nmixup: 0.0\n")
put("fuzz_data_yaml", "anchors_flow.yaml", "{train: t, val: [v1, v2], names: {0: &n a, 1: *n}, nc: 2}\n")

# ---- COCO json (images a.png 32x24 and b.jpg 24x32 exist beside it)
coco = {
    "info": {"year": 2017, "version": "1.0"},
    "images": [{"id": 1, "file_name": "a.png", "width": 32, "height": 24},
               {"id": 7, "file_name": "b.jpg", "width": 24, "height": 32, "license": 3}],
    "annotations": [
        {"id": 1, "image_id": 1, "category_id": 18, "bbox": [1.5, 2, 10, 8.25], "area": 82.5, "iscrowd": 0,
         "segmentation": [[1.5, 2, 11.5, 2, 11.5, 10.25]]},
        {"id": 2, "image_id": 7, "category_id": 3, "bbox": [0, 0, 24, 32], "iscrowd": 1,
         "segmentation": {"counts": [0, 768], "size": [32, 24]}},
        {"id": 3, "image_id": 7, "category_id": 18, "bbox": [20, 30, 10, 10], "iscrowd": 0},
        {"id": 4, "image_id": 99, "category_id": 3, "bbox": [1, 1, 2, 2]},
        {"id": 5, "image_id": 1, "category_id": 4, "bbox": [1, 1, 2]},
    ],
    "categories": [{"id": 18, "name": "dog", "supercategory": "animal"}, {"id": 3, "name": "car"}],
}
put("fuzz_coco_json", "instances.json", json.dumps(coco))
put("fuzz_coco_json", "minimal.json", '{"images":[{"id":0,"file_name":"a.png"}],"annotations":[],"categories":[{"id":0}]}')

# ---- VOC xml (JPEGImages/x.jpg and a.png are 32x24)
put("fuzz_voc_xml", "x.xml", """<annotation>
  <folder>VOC2007</folder>
  <filename>x.jpg</filename>
  <size><width>32</width><height>24</height><depth>3</depth></size>
  <object>
    <name>dog</name><pose>Left</pose><truncated>1</truncated><difficult>0</difficult>
    <bndbox><xmin>2</xmin><ymin>3</ymin><xmax>20</xmax><ymax>24</ymax></bndbox>
  </object>
  <object>
    <name>person</name><difficult>1</difficult>
    <bndbox><xmin>1</xmin><ymin>1</ymin><xmax>32</xmax><ymax>12.5</ymax></bndbox>
    <part><name>head</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>4</xmax><ymax>4</ymax></bndbox></part>
  </object>
</annotation>
""")
put("fuzz_voc_xml", "png_problems.xml", """<?xml version="1.0" encoding="UTF-8"?>
<!-- a.png instead of the default x.jpg -->
<annotation><filename>a.png</filename>
<object><name>cat</name><bndbox><xmin>5</xmin><ymin>5</ymin><xmax>5</xmax><ymax>9</ymax></bndbox></object>
<object><name>unicorn</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>9</xmax><ymax>9</ymax></bndbox></object>
<object><name>car</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>9</xmax></bndbox></object>
<object><name>car</name><bndbox><xmin>-4</xmin><ymin>1</ymin><xmax>90</xmax><ymax>9</ymax></bndbox></object>
<object><name>bus</name><bndbox><xmin>1e1</xmin><ymin>&#x31;</ymin><xmax>20</xmax><ymax>9</ymax></bndbox></object>
</annotation>
""")
put("fuzz_voc_xml", "entities.xml", """<?xml version="1.0"?>
<!DOCTYPE annotation [<!ENTITY n "boat">]>
<annotation><object><name>&n;</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>8</xmax><ymax>8</ymax></bndbox></object>
<object><name><![CDATA[bird]]></name><bndbox><xmin>2</xmin><ymin>2</ymin><xmax>8</xmax><ymax>8</ymax></bndbox></object>
</annotation>
""")


# ---- PNG: hand-made chunks for the colour types, bit depths, palette, interlacing and ancillary chunks
def chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png(w, h, depth, ctype, rows, interlace=0, extra=b""):
    ihdr = struct.pack(">IIBBBBB", w, h, depth, ctype, 0, 0, interlace)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + extra + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def rows_of(w, h, bits_per_px, filt=0):
    stride = (w * bits_per_px + 7) // 8
    return b"".join(bytes([filt]) + bytes((x * 7 + y * 13) & 0xFF for x in range(stride)) for y in range(h))


put("fuzz_png", "rgb8.png", png(12, 10, 8, 2, rows_of(12, 10, 24, 1)))
put("fuzz_png", "gray1.png", png(17, 11, 1, 0, rows_of(17, 11, 1)))
put("fuzz_png", "gray_alpha16.png", png(5, 4, 16, 4, rows_of(5, 4, 32, 4)))
put("fuzz_png", "rgba8_paeth.png", png(6, 6, 8, 6, rows_of(6, 6, 32, 4), extra=chunk(b"gAMA", struct.pack(">I", 45455))))
put("fuzz_png", "palette4.png", png(9, 7, 4, 3, rows_of(9, 7, 4, 2),
                                    extra=chunk(b"PLTE", bytes(range(48))) + chunk(b"tRNS", b"\x00\x80")))


def adam7(w, h, bpp_bytes):
    passes = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]
    out = b""
    for x0, y0, dx, dy in passes:
        pw = (w - x0 + dx - 1) // dx if w > x0 else 0
        ph = (h - y0 + dy - 1) // dy if h > y0 else 0
        if pw and ph:
            out += rows_of(pw, ph, bpp_bytes * 8, 3)
    return out


put("fuzz_png", "interlaced.png", png(10, 9, 8, 2, adam7(10, 9, 3), interlace=1))

# ---- the store's wire protocol: frames of one connection (Note [Store protocol])
def s(b):
    return struct.pack("<I", len(b)) + b


def frame(body):
    return struct.pack("<I", len(body)) + body


SET, GET, ADD, CHECK, WAIT, DELETE = range(1, 7)
put("fuzz_store", "session",
    frame(bytes([SET]) + s(b"rank0/addr") + s(b"127.0.0.1:29500")) +
    frame(bytes([ADD]) + s(b"count") + struct.pack("<q", 1)) +
    frame(bytes([ADD]) + s(b"count") + struct.pack("<q", -5)) +
    frame(bytes([GET]) + s(b"count") + struct.pack("<q", 1000)) +
    frame(bytes([CHECK]) + struct.pack("<I", 2) + s(b"count") + s(b"rank0/addr")) +
    frame(bytes([DELETE]) + s(b"count")) +
    frame(bytes([WAIT]) + struct.pack("<I", 2) + s(b"count") + s(b"x") + struct.pack("<q", 300000)) +
    frame(bytes([GET]) + s(b"missing") + struct.pack("<q", -1)))
put("fuzz_store", "add_to_text", frame(bytes([SET]) + s(b"k") + s(b"12abc")) + frame(bytes([ADD]) + s(b"k") + struct.pack("<q", 3)))
put("fuzz_store", "short_body", frame(bytes([SET]) + s(b"k")) + frame(bytes([7])))


# ---- detection records (Note [Record bytes])
def records(recs):
    out = b"RGDR" + struct.pack("<IQ", 1, len(recs))
    for image_id, gts, dets in recs:
        out += struct.pack("<qQQ", image_id, len(gts), len(dets))
        for x, y, w, h, area, cat, crowd, diff in gts:
            out += struct.pack("<5dqBB", x, y, w, h, area, cat, crowd, diff)
        for x, y, w, h, score, cat in dets:
            out += struct.pack("<5dq", x, y, w, h, score, cat)
    return out


put("fuzz_records", "two_images", records([(42, [(1, 2, 3, 4, -1, 0, 0, 0), (0, 0, 10, 10, 80, 2, 1, 0)],
                                             [(1, 2, 3, 4.5, 0.9, 0)]), (7, [], [(5, 5, 1, 1, 0.1, 3)])]))
put("fuzz_records", "empty", records([]))
put("fuzz_records", "flags", records([(-1, [(0, 0, 1, 1, 1, -3, 2, 255)], [])]))


# ---- the label cache of key ("yolo", 0x5eed, no source), without its trailing checksum
def cstr(b):
    return struct.pack("<I", len(b)) + b


def stamp(size, mtime):
    return struct.pack("<qq", size, mtime)


def cache(extra, entries):
    out = b"RGLABELS" + struct.pack("<I", 1) + cstr(b"yolo") + struct.pack("<Q", 0x5EED) + stamp(-1, 0)
    out += struct.pack("<Q", len(extra)) + b"".join(cstr(e) for e in extra)
    out += struct.pack("<Q", len(entries))
    for image, label, ok, h, w, boxes, problems in entries:
        out += cstr(image) + cstr(label) + stamp(1234, 1700000000123456789) + stamp(56, 1700000000000000001)
        out += struct.pack("<Bqqqq", ok, h, w, 1, 0)
        out += struct.pack("<I", len(boxes)) + b"".join(struct.pack("<4fi", *b) for b in boxes)
        out += struct.pack("<I", len(problems))
        for kind, file, line, msg in problems:
            out += struct.pack("<B", kind) + cstr(file) + struct.pack("<q", line) + cstr(msg)
    return out


put("fuzz_label_cache", "two_entries", cache([b"18", b"dog"], [
    (b"images/a.jpg", b"labels/a.txt", 1, 24, 32, [(1, 2, 3, 4, 0), (0, 0, 32, 24, 2)],
     [(3, b"labels/a.txt", 4, b"'x' is not a finite number")]),
    (b"images/b.png", b"", 0, 0, 0, [], [(5, b"images/b.png", 0, b"missing image")])]))
put("fuzz_label_cache", "empty", cache([], []))
