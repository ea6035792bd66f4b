//! The subset of `onnx.proto` the importer reads, as hand-written prost messages (no protoc).
//!
//! Field numbers follow onnx.proto (IR version 10). proto2 `optional` scalars are declared as
//! plain prost scalars (absent = default), which decodes identically; packed and unpacked
//! repeated scalars are both accepted by prost.

/// `onnx.ModelProto`: the top-level container of a model file.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ModelProto {
    /// IR version the file was written with
    #[prost(int64, tag = "1")]
    pub ir_version: i64,
    /// producer tool name
    #[prost(string, tag = "2")]
    pub producer_name: String,
    /// producer tool version
    #[prost(string, tag = "3")]
    pub producer_version: String,
    /// model namespace
    #[prost(string, tag = "4")]
    pub domain: String,
    /// model version
    #[prost(int64, tag = "5")]
    pub model_version: i64,
    /// free text
    #[prost(string, tag = "6")]
    pub doc_string: String,
    /// the computation graph
    #[prost(message, optional, tag = "7")]
    pub graph: Option<GraphProto>,
    /// operator sets the graph uses
    #[prost(message, repeated, tag = "8")]
    pub opset_import: Vec<OperatorSetIdProto>,
}

/// `onnx.OperatorSetIdProto`: one (domain, version) operator set import.
#[derive(Clone, PartialEq, prost::Message)]
pub struct OperatorSetIdProto {
    /// "" or "ai.onnx" for the default domain
    #[prost(string, tag = "1")]
    pub domain: String,
    /// opset version
    #[prost(int64, tag = "2")]
    pub version: i64,
}

/// `onnx.GraphProto`: nodes in topological order, weights, inputs and outputs.
#[derive(Clone, PartialEq, prost::Message)]
pub struct GraphProto {
    /// nodes, topologically sorted
    #[prost(message, repeated, tag = "1")]
    pub node: Vec<NodeProto>,
    /// graph name
    #[prost(string, tag = "2")]
    pub name: String,
    /// constant tensors (weights)
    #[prost(message, repeated, tag = "5")]
    pub initializer: Vec<TensorProto>,
    /// free text
    #[prost(string, tag = "10")]
    pub doc_string: String,
    /// graph inputs (may include initializers in IR < 4)
    #[prost(message, repeated, tag = "11")]
    pub input: Vec<ValueInfoProto>,
    /// graph outputs
    #[prost(message, repeated, tag = "12")]
    pub output: Vec<ValueInfoProto>,
    /// shape information of intermediate values
    #[prost(message, repeated, tag = "13")]
    pub value_info: Vec<ValueInfoProto>,
}

/// `onnx.NodeProto`: one operator application.
#[derive(Clone, PartialEq, prost::Message)]
pub struct NodeProto {
    /// input value names ("" = absent optional input)
    #[prost(string, repeated, tag = "1")]
    pub input: Vec<String>,
    /// output value names
    #[prost(string, repeated, tag = "2")]
    pub output: Vec<String>,
    /// node name (may be empty)
    #[prost(string, tag = "3")]
    pub name: String,
    /// operator type (`Conv`, ...)
    #[prost(string, tag = "4")]
    pub op_type: String,
    /// attributes
    #[prost(message, repeated, tag = "5")]
    pub attribute: Vec<AttributeProto>,
    /// free text
    #[prost(string, tag = "6")]
    pub doc_string: String,
    /// operator domain ("" = default)
    #[prost(string, tag = "7")]
    pub domain: String,
}

/// `onnx.AttributeProto`: a named attribute of a node.
#[derive(Clone, PartialEq, prost::Message)]
pub struct AttributeProto {
    /// attribute name
    #[prost(string, tag = "1")]
    pub name: String,
    /// float value
    #[prost(float, tag = "2")]
    pub f: f32,
    /// integer value
    #[prost(int64, tag = "3")]
    pub i: i64,
    /// string value (bytes)
    #[prost(bytes = "vec", tag = "4")]
    pub s: Vec<u8>,
    /// tensor value
    #[prost(message, optional, tag = "5")]
    pub t: Option<TensorProto>,
    /// float list
    #[prost(float, repeated, tag = "7")]
    pub floats: Vec<f32>,
    /// integer list
    #[prost(int64, repeated, tag = "8")]
    pub ints: Vec<i64>,
    /// string list
    #[prost(bytes = "vec", repeated, tag = "9")]
    pub strings: Vec<Vec<u8>>,
    /// tensor list
    #[prost(message, repeated, tag = "10")]
    pub tensors: Vec<TensorProto>,
    /// free text
    #[prost(string, tag = "13")]
    pub doc_string: String,
    /// which of the value fields is in use (`AttributeType`)
    #[prost(int32, tag = "20")]
    pub r#type: i32,
    /// reference to a function attribute
    #[prost(string, tag = "21")]
    pub ref_attr_name: String,
}

/// `AttributeProto.AttributeType` values used here.
pub mod attribute_type {
    /// float
    pub const FLOAT: i32 = 1;
    /// int
    pub const INT: i32 = 2;
    /// string
    pub const STRING: i32 = 3;
    /// tensor
    pub const TENSOR: i32 = 4;
    /// graph (subgraph)
    pub const GRAPH: i32 = 5;
    /// floats
    pub const FLOATS: i32 = 6;
    /// ints
    pub const INTS: i32 = 7;
    /// strings
    pub const STRINGS: i32 = 8;
}

/// `onnx.StringStringEntryProto`: a key/value pair (external data locations).
#[derive(Clone, PartialEq, prost::Message)]
pub struct StringStringEntryProto {
    /// key
    #[prost(string, tag = "1")]
    pub key: String,
    /// value
    #[prost(string, tag = "2")]
    pub value: String,
}

/// `onnx.TensorProto`: a constant tensor (initializer or attribute value).
#[derive(Clone, PartialEq, prost::Message)]
pub struct TensorProto {
    /// shape
    #[prost(int64, repeated, tag = "1")]
    pub dims: Vec<i64>,
    /// element type (`DataType`)
    #[prost(int32, tag = "2")]
    pub data_type: i32,
    /// FLOAT data
    #[prost(float, repeated, tag = "4")]
    pub float_data: Vec<f32>,
    /// INT32, INT16, INT8, UINT16, UINT8, BOOL, FLOAT16 data
    #[prost(int32, repeated, tag = "5")]
    pub int32_data: Vec<i32>,
    /// STRING data
    #[prost(bytes = "vec", repeated, tag = "6")]
    pub string_data: Vec<Vec<u8>>,
    /// INT64 data
    #[prost(int64, repeated, tag = "7")]
    pub int64_data: Vec<i64>,
    /// tensor name
    #[prost(string, tag = "8")]
    pub name: String,
    /// little-endian raw bytes of any numeric type
    #[prost(bytes = "vec", tag = "9")]
    pub raw_data: Vec<u8>,
    /// DOUBLE data
    #[prost(double, repeated, tag = "10")]
    pub double_data: Vec<f64>,
    /// UINT32, UINT64 data
    #[prost(uint64, repeated, tag = "11")]
    pub uint64_data: Vec<u64>,
    /// free text
    #[prost(string, tag = "12")]
    pub doc_string: String,
    /// external data location entries
    #[prost(message, repeated, tag = "13")]
    pub external_data: Vec<StringStringEntryProto>,
    /// 0 = data inline, 1 = external file
    #[prost(int32, tag = "14")]
    pub data_location: i32,
}

/// `TensorProto.DataType` values.
pub mod data_type {
    /// float32
    pub const FLOAT: i32 = 1;
    /// uint8
    pub const UINT8: i32 = 2;
    /// int8
    pub const INT8: i32 = 3;
    /// uint16
    pub const UINT16: i32 = 4;
    /// int16
    pub const INT16: i32 = 5;
    /// int32
    pub const INT32: i32 = 6;
    /// int64
    pub const INT64: i32 = 7;
    /// string
    pub const STRING: i32 = 8;
    /// bool
    pub const BOOL: i32 = 9;
    /// float16
    pub const FLOAT16: i32 = 10;
    /// float64
    pub const DOUBLE: i32 = 11;
    /// uint32
    pub const UINT32: i32 = 12;
    /// uint64
    pub const UINT64: i32 = 13;
}

/// `onnx.ValueInfoProto`: name and type of a graph input / output / intermediate.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ValueInfoProto {
    /// value name
    #[prost(string, tag = "1")]
    pub name: String,
    /// value type
    #[prost(message, optional, tag = "2")]
    pub r#type: Option<TypeProto>,
    /// free text
    #[prost(string, tag = "3")]
    pub doc_string: String,
}

/// `onnx.TypeProto` (only the tensor alternative is read).
#[derive(Clone, PartialEq, prost::Message)]
pub struct TypeProto {
    /// tensor type (oneof member 1)
    #[prost(message, optional, tag = "1")]
    pub tensor_type: Option<TypeProtoTensor>,
    /// denotation
    #[prost(string, tag = "6")]
    pub denotation: String,
}

/// `onnx.TypeProto.Tensor`: element type and (possibly symbolic) shape.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TypeProtoTensor {
    /// element type (`DataType`)
    #[prost(int32, tag = "1")]
    pub elem_type: i32,
    /// shape, absent when unknown rank
    #[prost(message, optional, tag = "2")]
    pub shape: Option<TensorShapeProto>,
}

/// `onnx.TensorShapeProto`: list of dimensions.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TensorShapeProto {
    /// dimensions
    #[prost(message, repeated, tag = "1")]
    pub dim: Vec<TensorShapeDimension>,
}

/// `onnx.TensorShapeProto.Dimension`: a fixed value or a symbolic name.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TensorShapeDimension {
    /// fixed size (oneof member 1; 0 / absent when symbolic)
    #[prost(int64, optional, tag = "1")]
    pub dim_value: Option<i64>,
    /// symbolic name (oneof member 2)
    #[prost(string, optional, tag = "2")]
    pub dim_param: Option<String>,
    /// denotation
    #[prost(string, tag = "3")]
    pub denotation: String,
}
