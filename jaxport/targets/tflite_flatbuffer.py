"""Edits of a `.tflite` flatbuffer that the TFLite target makes after conversion.

Contract:
- `runnable_everywhere(flatbuffer)` returns the model with two repairs, each only where needed
  (a model needing neither is returned byte for byte):
  1. every signature output is a tensor of its own, written by an operator: an output that *is* a signature input (an identity function,
  a broadcast to the same shape, `device_put`), or the same tensor as an earlier output (two
  outputs the converter merged), gets a `CAST` to its own dtype (a copy) into a new tensor. The
  TFLite converter produces such aliases and LiteRT's interpreter runs them, but runtimes that bind
  one buffer per signature name (LiteRT.js, LiteRT's CompiledModel API) read the aliased output
  from an unwritten buffer or drop one of the merged names;
  2. a constant with no elements (`jnp.arange(0)`, an empty window) gets a buffer of a few zero
  bytes: LiteRT refuses a constant whose buffer is empty ("Invalid tensor size").
- `with_io_shapes(flatbuffer, signature, shapes)` sets the shapes of a signature's inputs and
  outputs in place (LiteRT.js runs a model only at the shapes its file declares).
"""

from __future__ import annotations

import numpy as np

from jaxport.errors import TargetError

_FILE_IDENTIFIER = b"TFL3"


def _aliased_outputs(subgraph_inputs: set[int], outputs: list[int]) -> list[int]:
    """Positions in `outputs` whose tensor is a subgraph input or an earlier output's."""
    seen: set[int] = set()
    aliased = []
    for position, tensor in enumerate(outputs):
        if tensor in subgraph_inputs or tensor in seen:
            aliased.append(position)
        seen.add(tensor)
    return aliased


_EMPTY_CONSTANT_BYTES = 16  # what an empty constant's buffer gets: LiteRT reads none of it


def runnable_everywhere(flatbuffer: bytes) -> bytes:
    """`flatbuffer` repaired for every runtime (see the module contract)."""
    from ai_edge_litert import schema_py_generated as schema

    model = schema.Model.GetRootAs(flatbuffer, 0)
    aliased = False
    for s in range(model.SignatureDefsLength()):
        sig = model.SignatureDefs(s)
        subgraph = model.Subgraphs(sig.SubgraphIndex())
        inputs = {int(i) for i in subgraph.InputsAsNumpy()} if subgraph.InputsLength() else set()
        outputs = [sig.Outputs(i).TensorIndex() for i in range(sig.OutputsLength())]
        aliased |= bool(_aliased_outputs(inputs, outputs))
    empty = _empty_constant_buffers(model)
    if not aliased and not empty:
        return flatbuffer

    import flatbuffers

    obj = schema.ModelT.InitFromObj(model)
    if aliased:
        _copy_aliased_outputs(obj)
    for index in empty:
        obj.buffers[index].data = np.zeros(_EMPTY_CONSTANT_BYTES, np.uint8)
    builder = flatbuffers.Builder(len(flatbuffer) + 1024)
    builder.Finish(obj.Pack(builder), file_identifier=_FILE_IDENTIFIER)
    return bytes(builder.Output())


def _empty_constant_buffers(model) -> set[int]:
    """Indices of the buffers of constants with no elements whose data is an empty vector."""
    found = set()
    for g in range(model.SubgraphsLength()):
        subgraph = model.Subgraphs(g)
        for t in range(subgraph.TensorsLength()):
            tensor = subgraph.Tensors(t)
            buffer = tensor.Buffer()
            if buffer == 0 or tensor.ShapeLength() == 0 or 0 not in tensor.ShapeAsNumpy():
                continue
            data = model.Buffers(buffer)
            if not data.DataIsNone() and data.DataLength() == 0 and data.Size() == 0:
                found.add(buffer)
    return found


def _copy_aliased_outputs(obj) -> None:
    """Give each aliased signature output of `obj` (a `ModelT`) a tensor of its own, written by
    a `CAST` to its own dtype."""
    from ai_edge_litert import schema_py_generated as schema

    cast = _opcode_index(obj, schema.BuiltinOperator.CAST)
    for sig in obj.signatureDefs:
        subgraph = obj.subgraphs[sig.subgraphIndex]
        listed = _ints(subgraph.outputs)  # the subgraph's outputs, as converted
        subgraph.outputs = list(listed)
        outputs = [m.tensorIndex for m in sig.outputs]
        for position in _aliased_outputs(set(_ints(subgraph.inputs)), outputs):
            tensor_map, old = sig.outputs[position], outputs[position]
            subgraph.tensors.append(_copy_tensor(subgraph.tensors[old], tensor_map.name))
            new = len(subgraph.tensors) - 1
            subgraph.operators.append(_copy_op(cast, old, new, subgraph.tensors[new].type))
            tensor_map.tensorIndex = new
            # the k-th signature output on `old` stands for the k-th subgraph output on it
            k = outputs[:position].count(old)
            slots = [i for i, t in enumerate(listed) if t == old]
            if k < len(slots):
                subgraph.outputs[slots[k]] = new
            else:
                subgraph.outputs.append(new)


def _ints(vector) -> list[int]:
    """A flatbuffer int vector of the object API (numpy, list or None when empty) as a list."""
    return [] if vector is None else [int(v) for v in vector]


def _copy_op(opcode: int, source: int, target: int, dtype: int):
    """A `CAST` from tensor `source` to `target`, both of `dtype`: a copy."""
    from ai_edge_litert import schema_py_generated as schema

    op = schema.OperatorT()
    op.opcodeIndex, op.inputs, op.outputs = opcode, [source], [target]
    op.builtinOptionsType = schema.BuiltinOptions.CastOptions
    op.builtinOptions = schema.CastOptionsT()
    op.builtinOptions.inDataType = op.builtinOptions.outDataType = dtype
    return op


def _opcode_index(obj, builtin: int) -> int:
    """Index of `builtin`'s operator code in `obj`, added when the model has none."""
    from ai_edge_litert import schema_py_generated as schema

    for i, code in enumerate(obj.operatorCodes or []):
        if max(code.builtinCode, code.deprecatedBuiltinCode) == builtin:
            return i
    code = schema.OperatorCodeT()
    code.builtinCode, code.deprecatedBuiltinCode, code.version = builtin, min(builtin, 127), 1
    obj.operatorCodes = [*(obj.operatorCodes or []), code]
    return len(obj.operatorCodes) - 1


def _copy_tensor(source, name: bytes | str):
    """A tensor like `source` (type, shape, shape signature, quantization), with no data."""
    from ai_edge_litert import schema_py_generated as schema

    tensor = schema.TensorT()
    tensor.type, tensor.quantization = source.type, source.quantization
    tensor.shape = None if source.shape is None else np.array(source.shape, dtype=np.int32)
    tensor.shapeSignature = (None if source.shapeSignature is None
                             else np.array(source.shapeSignature, dtype=np.int32))
    tensor.buffer = 0  # buffer 0 is the empty one: an operator writes this tensor
    tensor.name = (name.decode() if isinstance(name, bytes) else name) + "/copy"
    return tensor


def with_io_shapes(flatbuffer: bytes, signature: str, shapes: dict[str, tuple[int, ...]]) -> bytes:
    """`flatbuffer` with the `shape` and `shape_signature` of `signature`'s inputs and outputs
    set to `shapes` (by signature name); every other byte is unchanged.

    Raises `TargetError` when the signature, a name, or a shape of the tensor's rank is missing.
    """
    from ai_edge_litert import schema_py_generated as schema

    data = bytearray(flatbuffer)  # the views below write into it
    model = schema.Model.GetRootAs(data, 0)
    for s in range(model.SignatureDefsLength()):
        sig = model.SignatureDefs(s)
        if sig.SignatureKey().decode() != signature:
            continue
        subgraph = model.Subgraphs(sig.SubgraphIndex())
        maps = [sig.Inputs(i) for i in range(sig.InputsLength())]
        maps += [sig.Outputs(i) for i in range(sig.OutputsLength())]
        for tensor_map in maps:
            name = tensor_map.Name().decode()
            tensor = subgraph.Tensors(tensor_map.TensorIndex())
            shape = shapes.get(name)
            if shape is None or len(shape) != tensor.ShapeLength():
                raise TargetError(f"signature {signature!r}: no shape of rank {tensor.ShapeLength()} "
                                  f"for {name!r} (got {shape})", stage="verify")
            for view in (tensor.ShapeAsNumpy(), tensor.ShapeSignatureAsNumpy()):
                if isinstance(view, np.ndarray):  # an absent shape_signature reads as 0
                    view[:] = shape
        return bytes(data)
    raise TargetError(f"the TFLite model has no signature {signature!r}", stage="verify")
