#!/usr/bin/env python3
"""Convert MediaPipe's Selfie Segmentation ``.tflite`` models to ONNX.

Why this exists
---------------
vbg runs its person-segmentation models with ONNX Runtime.  Google's MediaPipe
Selfie Segmentation models (Apache-2.0) are only published as TFLite
flatbuffers, and general-purpose converters fail on them: the weights are
stored as float16 behind DEQUANTIZE ops, and the final upsampling layer is
MediaPipe's custom op ``Convolution2DTransposeBias``.  This script is a small,
self-contained converter for exactly the operator set these two models use.
It is a development tool: it is not installed with vbg and does not import it.

Getting the input
-----------------
The models ship inside the MediaPipe wheel on PyPI::

    pip download --no-deps mediapipe==0.10.14
    python tools/convert_selfie.py --wheel mediapipe-0.10.14-*.whl \\
        --out vbg/models/assets

The platform wheels of 0.10.14 should all carry the same .tflite files (the
shipped ONNX files came from the cp311 manylinux x86-64 wheel); their sha256
is checked against the constants below, so a different file is refused.  A
single extracted file can be converted with ``--tflite FILE -o OUT.onnx``.
``--verify`` compares ONNX Runtime against the LiteRT interpreter
(``pip install ai-edge-litert``, which runs the custom op through its XNNPACK
delegate) on random inputs, if both are importable.

What the conversion does
------------------------
* TFLite tensors are NHWC; the ONNX graph is NCHW throughout.  Every 4-D
  activation tensor is kept in NCHW, and constant weights are transposed
  once at conversion time, so the graph needs no Transpose nodes.
* float16 weights (``DEQUANTIZE`` of a constant) are widened to float32
  initializers; no DEQUANTIZE/Cast is left in the graph.
* ``Convolution2DTransposeBias`` becomes ``ConvTranspose`` with bias.
* TFLite SAME padding is turned into explicit (possibly asymmetric) pads;
  fused activations in op options become separate activation nodes.
* Graph input is ``input`` [1,3,H,W] RGB in [0,1]; output is ``output``
  [1,1,H,W], the person probability (the model already ends in a sigmoid).

Dependencies: ``tflite`` (flatbuffer reader), ``onnx``, ``numpy``;
``onnxruntime`` and ``ai_edge_litert`` only for ``--verify``.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import struct
import sys
import zipfile
from dataclasses import dataclass, field

import numpy as np
import onnx
import tflite
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
IR_VERSION = 8  # the IR version that introduced opset 17; any modern runtime loads it
MEDIAPIPE_VERSION = "0.10.14"
WHEEL_DIR = "mediapipe/modules/selfie_segmentation/"

# Known sources: file name inside the wheel -> (sha256, size in bytes).
KNOWN_MODELS = {
    "selfie_segmentation.tflite": (
        "9ee168ec7c8f2a16c56fe8e1cfbc514974cbbb7e434051b455635f1bd1462f5c",
        249505,
    ),
    "selfie_segmentation_landscape.tflite": (
        "a77d03f4659b9f6b6c1f5106947bf40e99d7655094b6527f214ea7d451106edd",
        250145,
    ),
}

# TFLite enum values (see tensorflow/lite/schema/schema.fbs).
_OPNAMES = {
    v: k for k, v in vars(tflite.BuiltinOperator).items() if not k.startswith("_")
}
_NUMPY_DTYPE = {
    tflite.TensorType.FLOAT32: np.float32,
    tflite.TensorType.FLOAT16: np.float16,
    tflite.TensorType.INT32: np.int32,
    tflite.TensorType.INT64: np.int64,
    tflite.TensorType.UINT8: np.uint8,
    tflite.TensorType.INT8: np.int8,
}
# NHWC axis -> NCHW axis, for 4-D tensors.
_NHWC_TO_NCHW_AXIS = {0: 0, 1: 2, 2: 3, 3: 1}


class ConversionError(Exception):
    """The .tflite model uses something this converter does not handle."""


# --------------------------------------------------------------------------
# Reading the flatbuffer
# --------------------------------------------------------------------------


@dataclass
class Tensor:
    """One TFLite tensor; ``const`` holds the data of constant tensors."""

    name: str
    shape: list[int]
    dtype: int
    const: np.ndarray | None = None


@dataclass
class Op:
    """One TFLite operator with its decoded options table (if any)."""

    index: int
    kind: str  # builtin name, e.g. "CONV_2D", or "CUSTOM:<custom code>"
    inputs: list[int]  # tensor indices, -1 for an omitted optional input
    outputs: list[int]
    options: object = None  # flatbuffers table (Init'ed), or None
    custom_options: bytes = b""


@dataclass
class TFLiteGraph:
    tensors: list[Tensor]
    ops: list[Op]
    inputs: list[int]
    outputs: list[int]


# Builtin op name -> options class in the ``tflite`` package.
_OPTIONS_CLASS = {
    "CONV_2D": tflite.Conv2DOptions,
    "DEPTHWISE_CONV_2D": tflite.DepthwiseConv2DOptions,
    "AVERAGE_POOL_2D": tflite.Pool2DOptions,
    "ADD": tflite.AddOptions,
    "MUL": tflite.MulOptions,
    "MEAN": tflite.ReducerOptions,
    "RESIZE_BILINEAR": tflite.ResizeBilinearOptions,
}


def _buffer_data(model_bytes: bytes, model, index: int) -> bytes | None:
    buf = model.Buffers(index)
    if buf is None:
        return None
    if buf.DataLength() > 0:
        return buf.DataAsNumpy().tobytes()
    # Models > 2 GB keep data after the flatbuffer (offset/size); harmless here.
    if buf.Offset() > 1 and buf.Size() > 0:
        return model_bytes[buf.Offset() : buf.Offset() + buf.Size()]
    return None


def read_tflite(model_bytes: bytes) -> TFLiteGraph:
    """Parse the first subgraph of a .tflite flatbuffer."""
    model = tflite.Model.GetRootAsModel(model_bytes, 0)
    if model.SubgraphsLength() != 1:
        raise ConversionError("expected exactly one subgraph")
    sg = model.Subgraphs(0)

    tensors = []
    for i in range(sg.TensorsLength()):
        t = sg.Tensors(i)
        shape = [int(d) for d in t.ShapeAsNumpy()] if t.ShapeLength() else []
        tensor = Tensor(t.Name().decode(), shape, t.Type())
        data = _buffer_data(model_bytes, model, t.Buffer())
        if data is not None:
            if t.Type() not in _NUMPY_DTYPE:
                raise ConversionError(f"tensor {tensor.name}: unsupported type {t.Type()}")
            arr = np.frombuffer(data, dtype=_NUMPY_DTYPE[t.Type()])
            tensor.const = arr.reshape(shape).copy()
        tensors.append(tensor)

    ops = []
    for i in range(sg.OperatorsLength()):
        o = sg.Operators(i)
        code = model.OperatorCodes(o.OpcodeIndex())
        builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        if builtin == tflite.BuiltinOperator.CUSTOM:
            kind = "CUSTOM:" + code.CustomCode().decode()
        else:
            kind = _OPNAMES.get(builtin, f"BUILTIN_{builtin}")
        options = None
        if kind in _OPTIONS_CLASS and o.BuiltinOptions() is not None:
            table = o.BuiltinOptions()
            options = _OPTIONS_CLASS[kind]()
            options.Init(table.Bytes, table.Pos)
        custom = o.CustomOptionsAsNumpy().tobytes() if o.CustomOptionsLength() else b""
        ops.append(
            Op(
                index=i,
                kind=kind,
                inputs=[int(x) for x in o.InputsAsNumpy()],
                outputs=[int(x) for x in o.OutputsAsNumpy()],
                options=options,
                custom_options=custom,
            )
        )
    return TFLiteGraph(
        tensors, ops, [int(x) for x in sg.InputsAsNumpy()], [int(x) for x in sg.OutputsAsNumpy()]
    )


# --------------------------------------------------------------------------
# Building the ONNX graph
# --------------------------------------------------------------------------


def same_pads(in_size: int, kernel: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    """TFLite/TensorFlow SAME padding (begin, end) for one spatial axis.

    TensorFlow puts the extra pixel of an odd total at the end, so a stride-2
    layer on an even input pads (0, 1), not (1, 1): ONNX needs explicit pads.
    """
    out = -(-in_size // stride)
    eff_kernel = (kernel - 1) * dilation + 1
    total = max((out - 1) * stride + eff_kernel - in_size, 0)
    return total // 2, total - total // 2


@dataclass
class Builder:
    """Accumulates ONNX nodes/initializers while walking the TFLite ops."""

    graph: TFLiteGraph
    nodes: list = field(default_factory=list)
    initializers: list = field(default_factory=list)
    _names: dict = field(default_factory=dict)
    _used: set = field(default_factory=set)

    # -- naming ------------------------------------------------------------
    def name(self, idx: int) -> str:
        """ONNX value name of TFLite tensor ``idx`` (graph I/O get fixed names)."""
        if idx in self._names:
            return self._names[idx]
        if idx == self.graph.inputs[0]:
            n = "input"
        elif idx == self.graph.outputs[0]:
            n = "output"
        else:
            n = self.unique(self.graph.tensors[idx].name)
        self._names[idx] = n
        return n

    def unique(self, base: str) -> str:
        n, k = base, 1
        while n in self._used or n in ("input", "output"):
            k += 1
            n = f"{base}_{k}"
        self._used.add(n)
        return n

    # -- tensors -----------------------------------------------------------
    def tensor(self, idx: int) -> Tensor:
        return self.graph.tensors[idx]

    def const(self, idx: int) -> np.ndarray | None:
        return None if idx < 0 else self.graph.tensors[idx].const

    def require_const(self, op: Op, pos: int, what: str) -> np.ndarray:
        arr = self.const(op.inputs[pos]) if pos < len(op.inputs) else None
        if arr is None:
            raise ConversionError(f"op {op.index} {op.kind}: {what} must be a constant")
        return arr

    def initializer(self, base: str, array: np.ndarray) -> str:
        if array.dtype == np.float16 or array.dtype == np.float64:
            array = array.astype(np.float32)
        n = self.unique(base)
        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(array), n))
        return n

    def operand(self, idx: int, rank4: bool) -> str:
        """Name of an elementwise operand; constants are re-laid-out for NCHW."""
        arr = self.const(idx)
        if arr is None:
            if rank4 and len(self.tensor(idx).shape) != 4:
                raise ConversionError(
                    f"broadcasting a non-4-D activation {self.tensor(idx).name} against NCHW"
                )
            return self.name(idx)
        arr = arr.astype(np.float32)
        if rank4:
            arr = arr.reshape((1,) * (4 - arr.ndim) + arr.shape).transpose(0, 3, 1, 2)
        return self.initializer(self.tensor(idx).name, arr)

    def node(self, op_type: str, inputs: list[str], outputs: list[str], op: Op, **attrs) -> None:
        name = f"op{op.index:03d}_{op.kind.split(':')[-1]}_{op_type}"
        self.nodes.append(helper.make_node(op_type, inputs, outputs, name=self.unique(name), **attrs))

    def emit_with_activation(
        self, op_type: str, inputs: list[str], op: Op, activation: int, **attrs
    ) -> None:
        """Emit ``op_type`` into op.outputs[0], followed by a fused activation if any."""
        out = self.name(op.outputs[0])
        if activation == tflite.ActivationFunctionType.NONE:
            self.node(op_type, inputs, [out], op, **attrs)
            return
        tmp = self.unique(self.tensor(op.outputs[0]).name + "_preact")
        self.node(op_type, inputs, [tmp], op, **attrs)
        A = tflite.ActivationFunctionType
        if activation == A.RELU:
            self.node("Relu", [tmp], [out], op)
        elif activation == A.RELU6:
            self.node("Clip", [tmp, self.scalar(0.0), self.scalar(6.0)], [out], op)
        elif activation == A.RELU_N1_TO_1:
            self.node("Clip", [tmp, self.scalar(-1.0), self.scalar(1.0)], [out], op)
        elif activation == A.TANH:
            self.node("Tanh", [tmp], [out], op)
        else:
            raise ConversionError(f"op {op.index}: unsupported fused activation {activation}")

    def scalar(self, value: float) -> str:
        return self.initializer(f"const_{value:g}", np.array(value, dtype=np.float32))


# ---- one small function per TFLite op ------------------------------------


def conv_dequantize(b: Builder, op: Op) -> None:
    """float16 constant -> float32 constant, folded at conversion time."""
    src = b.const(op.inputs[0])
    if src is None or src.dtype != np.float16:
        raise ConversionError(f"op {op.index}: only DEQUANTIZE of float16 constants is supported")
    b.tensor(op.outputs[0]).const = src.astype(np.float32)


def _conv_pads(b: Builder, op: Op, kh: int, kw: int, sh: int, sw: int, dh: int, dw: int, padding):
    _, h, w, _ = b.tensor(op.inputs[0]).shape
    if padding == tflite.Padding.VALID:
        return [0, 0, 0, 0]
    top, bottom = same_pads(h, kh, sh, dh)
    left, right = same_pads(w, kw, sw, dw)
    return [top, left, bottom, right]


def _bias(b: Builder, op: Op, cout: int) -> list[str]:
    if len(op.inputs) < 3 or op.inputs[2] < 0:
        return []
    bias = b.require_const(op, 2, "bias").astype(np.float32).reshape(cout)
    return [b.initializer(b.tensor(op.inputs[2]).name.replace("_dequantize", ""), bias)]


def conv_conv2d(b: Builder, op: Op) -> None:
    o = op.options
    w = b.require_const(op, 1, "filter")  # [Cout, kh, kw, Cin]
    cout, kh, kw, cin = w.shape
    group = b.tensor(op.inputs[0]).shape[3] // cin
    pads = _conv_pads(b, op, kh, kw, o.StrideH(), o.StrideW(),
                      o.DilationHFactor(), o.DilationWFactor(), o.Padding())
    wname = b.initializer(b.tensor(op.inputs[1]).name.replace("_dequantize", ""),
                          w.transpose(0, 3, 1, 2))
    b.emit_with_activation(
        "Conv", [b.name(op.inputs[0]), wname] + _bias(b, op, cout), op,
        o.FusedActivationFunction(),
        kernel_shape=[kh, kw], strides=[o.StrideH(), o.StrideW()],
        dilations=[o.DilationHFactor(), o.DilationWFactor()], pads=pads, group=group,
    )


def conv_depthwise(b: Builder, op: Op) -> None:
    o = op.options
    w = b.require_const(op, 1, "filter")  # [1, kh, kw, Cin * multiplier]
    _, kh, kw, cout = w.shape
    cin = b.tensor(op.inputs[0]).shape[3]
    pads = _conv_pads(b, op, kh, kw, o.StrideH(), o.StrideW(),
                      o.DilationHFactor(), o.DilationWFactor(), o.Padding())
    # Output channel c*multiplier + m reads input channel c, as in ONNX grouped Conv.
    wname = b.initializer(b.tensor(op.inputs[1]).name.replace("_dequantize", ""),
                          w.transpose(3, 0, 1, 2))  # [Cout, 1, kh, kw]
    b.emit_with_activation(
        "Conv", [b.name(op.inputs[0]), wname] + _bias(b, op, cout), op,
        o.FusedActivationFunction(),
        kernel_shape=[kh, kw], strides=[o.StrideH(), o.StrideW()],
        dilations=[o.DilationHFactor(), o.DilationWFactor()], pads=pads, group=cin,
    )


def conv_transpose_bias(b: Builder, op: Op) -> None:
    """MediaPipe ``Convolution2DTransposeBias``: transposed conv + bias.

    custom_options is a raw ``TfLiteTransposeConvParams`` struct: int32
    padding (TfLitePadding: 1 = SAME, 2 = VALID), int32 stride_width,
    int32 stride_height.  Weights are [Cout, kh, kw, Cin].
    """
    if len(op.custom_options) < 12:
        raise ConversionError(f"op {op.index}: unexpected custom_options {op.custom_options!r}")
    padding, sw, sh = struct.unpack_from("<iii", op.custom_options)
    if padding not in (1, 2):
        raise ConversionError(f"op {op.index}: unknown padding enum {padding}")
    w = b.require_const(op, 1, "filter")
    cout, kh, kw, _ = w.shape
    _, h, wid, _ = b.tensor(op.inputs[0]).shape
    _, oh, ow, _ = b.tensor(op.outputs[0]).shape
    # The natural (unpadded) output is (in-1)*stride + k; crop/extend to the
    # declared output size, cropping the leading half first as TFLite does.
    pads, extra = [], []
    for size, k, s, out in ((h, kh, sh, oh), (wid, kw, sw, ow)):
        full = (size - 1) * s + k
        if padding == 2 and out != full:
            raise ConversionError(f"op {op.index}: VALID output {out} != {full}")
        total = max(full - out, 0)
        pads.append((total // 2, total - total // 2))
        extra.append(max(out - full, 0))
    wname = b.initializer(b.tensor(op.inputs[1]).name.replace("_dequantize", ""),
                          w.transpose(3, 0, 1, 2))  # ONNX: [Cin, Cout, kh, kw]
    attrs = dict(kernel_shape=[kh, kw], strides=[sh, sw],
                 pads=[pads[0][0], pads[1][0], pads[0][1], pads[1][1]])
    if any(extra):
        attrs["output_padding"] = extra
    b.node("ConvTranspose", [b.name(op.inputs[0]), wname] + _bias(b, op, cout),
           [b.name(op.outputs[0])], op, **attrs)


def conv_average_pool(b: Builder, op: Op) -> None:
    o = op.options
    _, h, w, _ = b.tensor(op.inputs[0]).shape
    kh, kw, sh, sw = o.FilterHeight(), o.FilterWidth(), o.StrideH(), o.StrideW()
    inp = b.name(op.inputs[0])
    if (kh, kw) == (h, w) and b.tensor(op.outputs[0]).shape[1:3] == [1, 1]:
        # A window covering the whole map (SAME pads are then zero): global pool.
        b.emit_with_activation("GlobalAveragePool", [inp], op, o.FusedActivationFunction())
        return
    pads = _conv_pads(b, op, kh, kw, sh, sw, 1, 1, o.Padding())
    # TFLite averages only over the valid (non-padding) pixels.
    b.emit_with_activation("AveragePool", [inp], op, o.FusedActivationFunction(),
                           kernel_shape=[kh, kw], strides=[sh, sw], pads=pads,
                           count_include_pad=0)


def conv_mean(b: Builder, op: Op) -> None:
    rank = len(b.tensor(op.inputs[0]).shape)
    axes = sorted(int(a) % rank for a in b.require_const(op, 1, "axes").reshape(-1))
    keep = bool(op.options.KeepDims()) if op.options is not None else False
    inp, out = b.name(op.inputs[0]), b.name(op.outputs[0])
    if rank != 4:
        b.node("ReduceMean", [inp], [out], op, axes=axes, keepdims=int(keep))
        return
    nchw_axes = sorted(_NHWC_TO_NCHW_AXIS[a] for a in axes)
    if keep:
        if nchw_axes == [2, 3]:
            b.node("GlobalAveragePool", [inp], [out], op)
        else:
            b.node("ReduceMean", [inp], [out], op, axes=nchw_axes, keepdims=1)
        return
    # Result has rank < 4, so it goes back to TFLite (NHWC-derived) order.
    t1 = b.unique(b.tensor(op.outputs[0]).name + "_nchw")
    t2 = b.unique(b.tensor(op.outputs[0]).name + "_nhwc")
    b.node("ReduceMean", [inp], [t1], op, axes=nchw_axes, keepdims=1)
    b.node("Transpose", [t1], [t2], op, perm=[0, 2, 3, 1])
    b.node("Squeeze", [t2, b.initializer("mean_axes", np.array(axes, np.int64))], [out], op)


def conv_resize_bilinear(b: Builder, op: Op) -> None:
    o = op.options
    new_h, new_w = (int(v) for v in b.require_const(op, 1, "size").reshape(2))
    n, _, _, c = b.tensor(op.inputs[0]).shape
    if o.AlignCorners():
        mode = "align_corners"
    elif o.HalfPixelCenters():
        mode = "half_pixel"  # (x + 0.5) / scale - 0.5, clamped at the border
    else:
        mode = "asymmetric"  # x / scale, TF's legacy default
    sizes = b.initializer(b.tensor(op.inputs[1]).name, np.array([n, c, new_h, new_w], np.int64))
    b.node("Resize", [b.name(op.inputs[0]), "", "", sizes], [b.name(op.outputs[0])], op,
           mode="linear", coordinate_transformation_mode=mode)


def _binary(onnx_op: str):
    def convert(b: Builder, op: Op) -> None:
        out_rank4 = len(b.tensor(op.outputs[0]).shape) == 4
        a, c = (b.operand(i, out_rank4) for i in op.inputs[:2])
        act = op.options.FusedActivationFunction() if op.options is not None else 0
        b.emit_with_activation(onnx_op, [a, c], op, act)
    return convert


def _unary(onnx_op: str):
    def convert(b: Builder, op: Op) -> None:
        b.node(onnx_op, [b.name(op.inputs[0])], [b.name(op.outputs[0])], op)
    return convert


# TFLite op -> converter.  Anything else is rejected with a clear error.
CONVERTERS = {
    "DEQUANTIZE": conv_dequantize,
    "CONV_2D": conv_conv2d,
    "DEPTHWISE_CONV_2D": conv_depthwise,
    "CUSTOM:Convolution2DTransposeBias": conv_transpose_bias,
    "AVERAGE_POOL_2D": conv_average_pool,
    "MEAN": conv_mean,
    "RESIZE_BILINEAR": conv_resize_bilinear,
    "ADD": _binary("Add"),
    "MUL": _binary("Mul"),
    "RELU": _unary("Relu"),
    "LOGISTIC": _unary("Sigmoid"),
    "HARD_SWISH": _unary("HardSwish"),  # x * relu6(x + 3) / 6, same definition
}


def _value_info(name: str, nhwc_shape: list[int]) -> onnx.ValueInfoProto:
    n, h, w, c = nhwc_shape
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, [n, c, h, w])


def convert(model_bytes: bytes, metadata: dict[str, str], graph_name: str) -> onnx.ModelProto:
    """Convert one .tflite model (bytes) to a checked ONNX ModelProto."""
    g = read_tflite(model_bytes)
    if len(g.inputs) != 1 or len(g.outputs) != 1:
        raise ConversionError("expected one input and one output")
    for idx in g.inputs + g.outputs:
        t = g.tensors[idx]
        if len(t.shape) != 4 or t.dtype != tflite.TensorType.FLOAT32:
            raise ConversionError(f"graph I/O {t.name} must be 4-D float32, got {t.shape}")

    b = Builder(g)
    for op in g.ops:
        fn = CONVERTERS.get(op.kind)
        if fn is None:
            raise ConversionError(f"op {op.index}: unsupported operator {op.kind}")
        fn(b, op)

    graph = helper.make_graph(
        b.nodes,
        graph_name,
        inputs=[_value_info("input", g.tensors[g.inputs[0]].shape)],
        outputs=[_value_info("output", g.tensors[g.outputs[0]].shape)],
        initializer=b.initializers,
        doc_string="input: RGB in [0,1], NCHW. output: person probability, NCHW.",
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        ir_version=IR_VERSION,
        producer_name="vbg tools/convert_selfie.py",
    )
    helper.set_model_props(model, metadata)
    model = onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    onnx.checker.check_model(model, full_check=True)
    return model


# --------------------------------------------------------------------------
# Sources, verification, CLI
# --------------------------------------------------------------------------


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# How vbg normalises the input of this graph: RGB / 255, no mean or std.
VBG_INPUT_METADATA = {"vbg.family": "selfie", "vbg.mean": "0.0,0.0,0.0", "vbg.std": "1.0,1.0,1.0"}


def metadata_for(file_name: str, data: bytes) -> dict[str, str]:
    return {
        "source": f"{WHEEL_DIR}{file_name} from mediapipe=={MEDIAPIPE_VERSION}",
        "source_sha256": sha256(data),
        "license": "Apache-2.0",
        "author": "Google LLC (MediaPipe)",
        "converted_by": "vbg tools/convert_selfie.py",
        **VBG_INPUT_METADATA,
    }


def identify(data: bytes) -> str | None:
    """File name (in the wheel) of a known model with these bytes, else None."""
    digest = sha256(data)
    return next((n for n, (h, _) in KNOWN_MODELS.items() if h == digest), None)


def check_known(file_name: str, data: bytes) -> None:
    if identify(data) != file_name:
        raise SystemExit(
            f"{file_name}: sha256 {sha256(data)} does not match mediapipe=={MEDIAPIPE_VERSION}"
        )


def verify(model: onnx.ModelProto, model_bytes: bytes, samples: int = 5, seed: int = 0) -> float:
    """Max |ONNX Runtime - LiteRT| over random inputs; NaN if a runtime is missing."""
    try:
        import onnxruntime as ort
        from ai_edge_litert.interpreter import Interpreter
    except ImportError as exc:
        print(f"  verify skipped: {exc}")
        return float("nan")
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    interp = Interpreter(model_content=model_bytes)  # XNNPACK implements the custom op
    interp.allocate_tensors()
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    rng = np.random.default_rng(seed)
    worst, lo, hi = 0.0, 1.0, 0.0
    for _ in range(samples):
        x = rng.random(inp["shape"], dtype=np.float32)  # NHWC
        interp.set_tensor(inp["index"], x)
        interp.invoke()
        ref = interp.get_tensor(out["index"]).transpose(0, 3, 1, 2)
        got = sess.run(["output"], {"input": x.transpose(0, 3, 1, 2).copy()})[0]
        worst = max(worst, float(np.abs(got - ref).max()))
        lo, hi = min(lo, float(ref.min())), max(hi, float(ref.max()))
    # Uniform noise drives these models to ~0 everywhere, so this is a smoke
    # test; compare on real photos for a meaningful check.
    print(f"  max |onnxruntime - litert| over {samples} random inputs: {worst:.3g} "
          f"(litert output range {lo:.3g}..{hi:.3g})")
    return worst


def convert_and_save(file_name: str, data: bytes, out_path: str, do_verify: bool,
                     metadata: dict[str, str]) -> None:
    graph_name = os.path.splitext(file_name)[0]
    model = convert(data, metadata, graph_name)
    os.makedirs(os.path.dirname(os.path.abspath(out_path)), exist_ok=True)
    with open(out_path, "wb") as f:
        f.write(model.SerializeToString())
    shape = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    print(f"{file_name} -> {out_path} ({os.path.getsize(out_path)} bytes, input {shape}, "
          f"{len(model.graph.node)} nodes)")
    if do_verify:
        verify(model, data)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--wheel", help="mediapipe==0.10.14 wheel (.whl) to read both models from")
    src.add_argument("--tflite", help="a single extracted .tflite file")
    p.add_argument("--out", help="output directory (with --wheel)")
    p.add_argument("-o", "--output", help="output .onnx file (with --tflite)")
    p.add_argument("--verify", action="store_true",
                   help="compare with the LiteRT interpreter (needs ai_edge_litert, onnxruntime)")
    p.add_argument("--allow-unknown", action="store_true",
                   help="with --tflite: convert a file whose sha256 is not a known "
                        "mediapipe==0.10.14 model (provenance metadata is then omitted)")
    args = p.parse_args(argv)

    try:
        if args.wheel:
            if not args.out:
                p.error("--wheel needs --out DIR")
            with zipfile.ZipFile(args.wheel) as zf:
                for file_name in KNOWN_MODELS:
                    data = zf.read(WHEEL_DIR + file_name)
                    check_known(file_name, data)
                    out = os.path.join(args.out, file_name.replace(".tflite", ".onnx"))
                    convert_and_save(file_name, data, out, args.verify,
                                     metadata_for(file_name, data))
        else:
            if not args.output:
                p.error("--tflite needs -o OUT.onnx")
            with open(args.tflite, "rb") as f:
                data = f.read()
            file_name = identify(data)
            if file_name is not None:
                meta = metadata_for(file_name, data)
            elif args.allow_unknown:
                file_name = os.path.basename(args.tflite)
                meta = {"source": file_name, "source_sha256": sha256(data),
                        "converted_by": "vbg tools/convert_selfie.py", **VBG_INPUT_METADATA}
            else:
                raise SystemExit(
                    f"{args.tflite}: sha256 {sha256(data)} is not a known "
                    f"mediapipe=={MEDIAPIPE_VERSION} selfie model (use --allow-unknown)"
                )
            convert_and_save(file_name, data, args.output, args.verify, meta)
    except ConversionError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
