"""An object-detection pipeline in NumPy, to profile with `allocation profile`.

    uv run allocation profile examples.detection_pipeline:PIPELINE --repeat 20

The stages have the shape of a camera-frame detector. They decode the PNG frame,
letterbox it to the 320 x 320 network input and normalise it to a float32 tensor. A small
convolutional network then predicts boxes, non-maximum suppression keeps the confident
ones, and the last stage draws them on the decoded frame. Everything is built at import
or setup from fixed seeds, so the pipeline needs no download and gives the same boxes on
every run:

- the frame is a synthetic 640 x 480 RGB picture (a gradient, rectangles, discs and
  noise), encoded as PNG by `encode_png` in setup, outside the timed stages;
- the network has 5 convolutions with weights drawn from a seeded generator. They are
  not trained, so the boxes mark nothing in particular, but the arithmetic and the sizes
  are those of a small single-stage detector.

The convolutions run as matrix products through NumPy's BLAS, which uses several
threads on a multi-core machine, so the profile shows `detect` with threads > 1 there.
`decode` and `draw` are pinned to the device id `edge`, where the camera and the display
are, as in the example systems of catalogs/systems/.
"""

from __future__ import annotations

import struct
import zlib

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from allocation.profile import Pipeline

__all__ = ["PIPELINE", "decode_png", "encode_png", "make_frame"]

FRAME_HEIGHT = 480
FRAME_WIDTH = 640
INPUT_SIZE = 320
"""Side of the square network input, in pixels."""
PAD_VALUE = 114
"""Grey level of the letterbox bars."""
N_CLASSES = 3
SCORE_THRESHOLD = 0.8
IOU_THRESHOLD = 0.45
MAX_CANDIDATES = 300
"""Boxes kept, by score, before non-maximum suppression."""
GRID_STRIDE = 8
"""Input pixels per cell of the output grid: three stride-2 convolutions."""
ANCHOR_PX = 32.0
"""Box side, in input pixels, for a raw size output of 0."""

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_FILTER_NONE, _FILTER_SUB, _FILTER_UP = 0, 1, 2


# The frame and its PNG encoding


def make_frame(seed: int = 7) -> np.ndarray:
    """Draw the synthetic camera frame, ``(480, 640, 3)`` uint8, the same for a given seed."""
    rng = np.random.default_rng(seed)
    rows = np.linspace(0.0, 1.0, FRAME_HEIGHT, dtype=np.float32)[:, None]
    columns = np.linspace(0.0, 1.0, FRAME_WIDTH, dtype=np.float32)[None, :]
    frame = np.empty((FRAME_HEIGHT, FRAME_WIDTH, 3), dtype=np.float32)
    frame[..., 0] = 60 + 120 * columns
    frame[..., 1] = 80 + 100 * rows
    frame[..., 2] = 140 - 60 * rows * columns

    y, x = np.mgrid[0:FRAME_HEIGHT, 0:FRAME_WIDTH]
    for _ in range(6):
        top, left = rng.integers(0, FRAME_HEIGHT - 120), rng.integers(0, FRAME_WIDTH - 160)
        height, width = rng.integers(40, 120), rng.integers(40, 160)
        frame[top : top + height, left : left + width] = rng.integers(0, 256, size=3)
    for _ in range(4):
        cy, cx = rng.integers(60, FRAME_HEIGHT - 60), rng.integers(60, FRAME_WIDTH - 60)
        radius = rng.integers(20, 60)
        frame[(y - cy) ** 2 + (x - cx) ** 2 <= radius**2] = rng.integers(0, 256, size=3)

    frame += rng.normal(0.0, 4.0, size=frame.shape).astype(np.float32)
    return np.clip(frame, 0, 255).astype(np.uint8)


def encode_png(image: np.ndarray) -> bytes:
    """Encode an ``(height, width, 3)`` uint8 image as an 8-bit RGB PNG.

    Every scanline uses the Up filter (PNG specification, section 9.2: each byte minus
    the byte above it, modulo 256), which suits the smooth regions of a camera frame.
    """
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected a (height, width, 3) uint8 image, got {image.shape}")
    height, width, _ = image.shape
    rows = image.reshape(height, width * 3)
    above = np.vstack([np.zeros((1, width * 3), dtype=np.uint8), rows[:-1]])
    filtered = rows - above  # uint8 arithmetic wraps modulo 256, as the filter requires
    scanlines = np.hstack([np.full((height, 1), _FILTER_UP, dtype=np.uint8), filtered])

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"".join(
        [
            _PNG_SIGNATURE,
            _chunk(b"IHDR", header),
            _chunk(b"IDAT", zlib.compress(scanlines.tobytes(), 6)),
            _chunk(b"IEND", b""),
        ]
    )


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def decode_png(data: bytes) -> np.ndarray:
    """Decode an 8-bit RGB, non-interlaced PNG into an ``(height, width, 3)`` uint8 array.

    Scanlines may use the None, Sub and Up filters.

    Raises
    ------
    ValueError
        For a file that is not PNG, a chunk whose CRC does not match, another colour type,
        bit depth or interlacing, or the Average and Paeth filters.
    """
    if not data.startswith(_PNG_SIGNATURE):
        raise ValueError("not a PNG file: the signature is missing")
    offset = len(_PNG_SIGNATURE)
    header = b""
    compressed = []
    while offset < len(data):
        (length,) = struct.unpack_from(">I", data, offset)
        kind = data[offset + 4 : offset + 8]
        body = data[offset + 8 : offset + 8 + length]
        (crc,) = struct.unpack_from(">I", data, offset + 8 + length)
        if zlib.crc32(kind + body) != crc:
            raise ValueError(f"PNG chunk {kind!r} at byte {offset} fails its CRC check")
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            compressed.append(body)
        elif kind == b"IEND":
            break
        offset += 12 + length

    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", header)
    if (depth, colour, interlace) != (8, 2, 0):
        raise ValueError(
            f"unsupported PNG: bit depth {depth}, colour type {colour}, interlace "
            f"{interlace}; only 8-bit RGB without interlacing is supported"
        )
    stride = width * 3
    raw = np.frombuffer(zlib.decompress(b"".join(compressed)), dtype=np.uint8)
    scanlines = raw.reshape(height, stride + 1)
    filters = scanlines[:, 0]
    rows = scanlines[:, 1:].copy()
    for r in range(height):
        kind = int(filters[r])
        if kind == _FILTER_SUB:
            # Each byte adds the byte 3 to its left (one RGB pixel), so a running sum per
            # channel undoes it.
            pixels = rows[r].reshape(width, 3)
            rows[r] = np.cumsum(pixels, axis=0, dtype=np.uint8).reshape(stride)
        elif kind == _FILTER_UP and r > 0:
            rows[r] += rows[r - 1]
        elif kind not in (_FILTER_NONE, _FILTER_UP):
            raise ValueError(f"PNG filter type {kind} in scanline {r} is not supported")
    return rows.reshape(height, width, 3)


# The network


def _make_weights(seed: int = 2024) -> list[tuple[np.ndarray, np.ndarray, int]]:
    """Draw the convolution weights: (kernels, biases, stride) per layer, He-scaled."""
    rng = np.random.default_rng(seed)
    # (input channels, output channels, kernel side, stride)
    shapes = [
        (3, 32, 3, 2),
        (32, 128, 3, 2),
        (128, 256, 3, 2),
        (256, 256, 3, 1),
        (256, 5 + N_CLASSES, 1, 1),
    ]
    layers = []
    for c_in, c_out, side, stride in shapes:
        scale = np.sqrt(2.0 / (c_in * side * side))
        kernels = (rng.standard_normal((c_out, c_in, side, side)) * scale).astype(np.float32)
        biases = (rng.standard_normal(c_out) * 0.1).astype(np.float32)
        layers.append((kernels, biases, stride))
    return layers


_LAYERS = _make_weights()


def _conv2d(x: np.ndarray, kernels: np.ndarray, biases: np.ndarray, stride: int) -> np.ndarray:
    """Convolve ``(channels, height, width)`` with ``(out, channels, k, k)`` kernels.

    The input is zero-padded by k // 2 on each side, so stride 1 keeps the size.
    """
    c_out, c_in, side, _ = kernels.shape
    pad = side // 2
    padded = np.pad(x, ((0, 0), (pad, pad), (pad, pad))) if pad else x
    windows = sliding_window_view(padded, (side, side), axis=(1, 2))[:, ::stride, ::stride]
    out_h, out_w = windows.shape[1:3]
    # im2col: one column of c_in * side * side values per output pixel, then one matrix
    # product, which NumPy hands to BLAS.
    columns = windows.transpose(0, 3, 4, 1, 2).reshape(c_in * side * side, out_h * out_w)
    out = kernels.reshape(c_out, -1) @ columns + biases[:, None]
    return out.reshape(c_out, out_h, out_w)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


# The stages


def setup() -> bytes:
    """Return the PNG bytes of the synthetic frame, as a camera would deliver them."""
    return encode_png(make_frame())


PIPELINE = Pipeline(
    "numpy-detection",
    description="Detect objects in a 640 x 480 PNG camera frame with a small NumPy "
    "convolutional network and draw the boxes",
    setup=setup,
)


@PIPELINE.stage(name="Decode the PNG camera frame", pin="edge")
def decode(png: bytes) -> np.ndarray:
    """Decode the frame: ``(480, 640, 3)`` uint8."""
    return decode_png(png)


@PIPELINE.stage(name="Letterbox the frame to the 320 x 320 network input")
def letterbox(frame: np.ndarray) -> np.ndarray:
    """Scale the frame to fit 320 x 320 with bilinear interpolation and pad it with grey."""
    height, width, _ = frame.shape
    scale = min(INPUT_SIZE / height, INPUT_SIZE / width)
    new_h, new_w = round(height * scale), round(width * scale)

    # Sample at pixel centres of the new grid; weights between the 4 nearest pixels.
    ys = np.clip((np.arange(new_h) + 0.5) / scale - 0.5, 0, height - 1)
    xs = np.clip((np.arange(new_w) + 0.5) / scale - 0.5, 0, width - 1)
    y0, x0 = np.floor(ys).astype(np.intp), np.floor(xs).astype(np.intp)
    y1, x1 = np.minimum(y0 + 1, height - 1), np.minimum(x0 + 1, width - 1)
    wy = (ys - y0).astype(np.float32)[:, None, None]
    wx = (xs - x0).astype(np.float32)[None, :, None]
    pixels = frame.astype(np.float32)
    top = pixels[y0][:, x0] * (1 - wx) + pixels[y0][:, x1] * wx
    bottom = pixels[y1][:, x0] * (1 - wx) + pixels[y1][:, x1] * wx
    resized = np.rint(top * (1 - wy) + bottom * wy).astype(np.uint8)

    canvas = np.full((INPUT_SIZE, INPUT_SIZE, 3), PAD_VALUE, dtype=np.uint8)
    pad_y, pad_x = (INPUT_SIZE - new_h) // 2, (INPUT_SIZE - new_w) // 2
    canvas[pad_y : pad_y + new_h, pad_x : pad_x + new_w] = resized
    return canvas


@PIPELINE.stage(name="Normalise to a float32 tensor, channels first")
def normalise(image: np.ndarray) -> np.ndarray:
    """Scale to [0, 1], subtract the mean and divide by the deviation: ``(3, 320, 320)``."""
    mean = np.array([0.485, 0.456, 0.406], dtype=np.float32)[:, None, None]
    deviation = np.array([0.229, 0.224, 0.225], dtype=np.float32)[:, None, None]
    tensor = image.transpose(2, 0, 1).astype(np.float32) / np.float32(255)
    return np.ascontiguousarray((tensor - mean) / deviation)


@PIPELINE.stage(name="Run the convolutional detector")
def detect(tensor: np.ndarray) -> np.ndarray:
    """Return the raw predictions, one row per cell of the 40 x 40 grid: ``(1600, 8)``.

    Each row contains the box offsets (x, y), the log box sizes (w, h), the objectness
    logit and one logit per class.
    """
    x = tensor
    for kernels, biases, stride in _LAYERS[:-1]:
        x = np.maximum(_conv2d(x, kernels, biases, stride), 0)
    kernels, biases, stride = _LAYERS[-1]
    head = _conv2d(x, kernels, biases, stride)
    return np.ascontiguousarray(head.reshape(head.shape[0], -1).T)


@PIPELINE.stage(name="Keep confident boxes (score threshold, non-maximum suppression)")
def select(predictions: np.ndarray) -> np.ndarray:
    """Return the kept boxes in frame pixels: ``(k, 6)`` float32, x1, y1, x2, y2, score, class."""
    grid = INPUT_SIZE // GRID_STRIDE
    gy, gx = np.divmod(np.arange(predictions.shape[0]), grid)
    centre_x = (gx + _sigmoid(predictions[:, 0])) * GRID_STRIDE
    centre_y = (gy + _sigmoid(predictions[:, 1])) * GRID_STRIDE
    box_w = ANCHOR_PX * np.exp(np.clip(predictions[:, 2], -4, 4))
    box_h = ANCHOR_PX * np.exp(np.clip(predictions[:, 3], -4, 4))
    logits = predictions[:, 5:]
    class_p = np.exp(logits - logits.max(axis=1, keepdims=True))
    class_p /= class_p.sum(axis=1, keepdims=True)
    scores = _sigmoid(predictions[:, 4]) * class_p.max(axis=1)
    classes = class_p.argmax(axis=1)

    keep = np.flatnonzero(scores >= SCORE_THRESHOLD)
    keep = keep[np.argsort(-scores[keep], kind="stable")][:MAX_CANDIDATES]

    # Undo the letterbox: from input pixels back to frame pixels.
    scale = min(INPUT_SIZE / FRAME_HEIGHT, INPUT_SIZE / FRAME_WIDTH)
    pad_y = (INPUT_SIZE - round(FRAME_HEIGHT * scale)) // 2
    pad_x = (INPUT_SIZE - round(FRAME_WIDTH * scale)) // 2
    boxes = np.stack(
        [
            (centre_x[keep] - box_w[keep] / 2 - pad_x) / scale,
            (centre_y[keep] - box_h[keep] / 2 - pad_y) / scale,
            (centre_x[keep] + box_w[keep] / 2 - pad_x) / scale,
            (centre_y[keep] + box_h[keep] / 2 - pad_y) / scale,
        ],
        axis=1,
    )
    boxes[:, [0, 2]] = np.clip(boxes[:, [0, 2]], 0, FRAME_WIDTH - 1)
    boxes[:, [1, 3]] = np.clip(boxes[:, [1, 3]], 0, FRAME_HEIGHT - 1)

    kept = _non_maximum_suppression(boxes, scores[keep])
    result = np.column_stack([boxes[kept], scores[keep][kept], classes[keep][kept]])
    return result.astype(np.float32)


def _non_maximum_suppression(boxes: np.ndarray, scores: np.ndarray) -> list[int]:
    """Return the indices kept by greedy NMS; `boxes` are sorted by descending score."""
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    remaining = np.arange(len(boxes))
    kept = []
    while remaining.size:
        best, rest = remaining[0], remaining[1:]
        kept.append(int(best))
        width = np.minimum(boxes[best, 2], boxes[rest, 2]) - np.maximum(
            boxes[best, 0], boxes[rest, 0]
        )
        height = np.minimum(boxes[best, 3], boxes[rest, 3]) - np.maximum(
            boxes[best, 1], boxes[rest, 1]
        )
        overlap = np.clip(width, 0, None) * np.clip(height, 0, None)
        iou = overlap / (areas[best] + areas[rest] - overlap + 1e-9)
        remaining = rest[iou <= IOU_THRESHOLD]
    return kept


_CLASS_COLOURS = np.array([[255, 64, 64], [64, 255, 64], [64, 128, 255]], dtype=np.uint8)


@PIPELINE.stage(name="Draw the boxes on the frame", inputs=["decode", "select"], pin="edge")
def draw(frame: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Return a copy of the frame with a 2-pixel outline around every box."""
    annotated = frame.copy()
    for x1, y1, x2, y2, _, label in boxes:
        left, top, right, bottom = int(x1), int(y1), int(x2), int(y2)
        colour = _CLASS_COLOURS[int(label) % len(_CLASS_COLOURS)]
        annotated[top : top + 2, left : right + 1] = colour
        annotated[max(bottom - 1, top) : bottom + 1, left : right + 1] = colour
        annotated[top : bottom + 1, left : left + 2] = colour
        annotated[top : bottom + 1, max(right - 1, left) : right + 1] = colour
    return annotated
