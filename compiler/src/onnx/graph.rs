//! The decoded ONNX graph the importer works on: nodes with typed attribute access, decoded
//! initializers, graph inputs with their (possibly symbolic) dims; loading and output selection.

use super::error::OnnxError;
use super::proto::{attribute_type as at, AttributeProto, ModelProto, NodeProto};
use super::tensor::{is_int_type, ConstTensor};
use prost::Message;
use std::collections::{HashMap, HashSet};
use std::path::Path;

/// One ONNX node with its attributes by name.
#[derive(Debug, Clone)]
pub struct Node {
    /// node name (first output name when the node is unnamed)
    pub name: String,
    /// operator type
    pub op_type: String,
    /// input names ("" = absent optional input)
    pub inputs: Vec<String>,
    /// output names
    pub outputs: Vec<String>,
    /// attributes by name
    pub attrs: HashMap<String, AttributeProto>,
}

/// One graph input (initializers excluded).
#[derive(Debug, Clone, PartialEq)]
pub struct GraphInput {
    /// input name
    pub name: String,
    /// dims, `None` for symbolic / unknown dims
    pub dims: Vec<Option<usize>>,
    /// true for integer inputs
    pub is_int: bool,
}

/// A whole decoded model.
#[derive(Debug, Clone)]
pub struct OnnxGraph {
    /// default-domain opset version
    pub opset: i64,
    /// nodes in topological order
    pub nodes: Vec<Node>,
    /// initializers by name
    pub initializers: HashMap<String, ConstTensor>,
    /// initializer names in file order (for deterministic iteration)
    pub initializer_order: Vec<String>,
    /// graph inputs that are not initializers
    pub inputs: Vec<GraphInput>,
    /// graph output names
    pub outputs: Vec<String>,
}

impl Node {
    fn from_proto(n: &NodeProto) -> Self {
        let name = if !n.name.is_empty() { n.name.clone() } else { n.output.first().cloned().unwrap_or_default() };
        let attrs = n.attribute.iter().map(|a| (a.name.clone(), a.clone())).collect();
        Node { name, op_type: n.op_type.clone(), inputs: n.input.clone(), outputs: n.output.clone(), attrs }
    }

    /// The i-th input name if present and non-empty.
    pub fn input(&self, i: usize) -> Option<&str> {
        self.inputs.get(i).map(|s| s.as_str()).filter(|s| !s.is_empty())
    }

    /// An error about this node.
    pub fn err(&self, msg: impl Into<String>) -> OnnxError {
        OnnxError::Node { node: self.name.clone(), op_type: self.op_type.clone(), msg: msg.into() }
    }

    /// True when the attribute is present.
    pub fn has(&self, name: &str) -> bool {
        self.attrs.contains_key(name)
    }

    /// Integer attribute or `default`.
    pub fn int(&self, name: &str, default: i64) -> Result<i64, OnnxError> {
        match self.attrs.get(name) {
            None => Ok(default),
            Some(a) if a.r#type == at::INT || a.r#type == 0 => Ok(a.i),
            Some(_) => Err(self.err(format!("attribute '{name}' is not an integer"))),
        }
    }

    /// Float attribute or `default`.
    pub fn float(&self, name: &str, default: f32) -> Result<f32, OnnxError> {
        match self.attrs.get(name) {
            None => Ok(default),
            Some(a) if a.r#type == at::FLOAT || a.r#type == 0 => Ok(a.f),
            Some(a) if a.r#type == at::INT => Ok(a.i as f32),
            Some(_) => Err(self.err(format!("attribute '{name}' is not a float"))),
        }
    }

    /// Integer-list attribute, `None` when absent.
    pub fn ints(&self, name: &str) -> Result<Option<Vec<i64>>, OnnxError> {
        match self.attrs.get(name) {
            None => Ok(None),
            Some(a) if a.r#type == at::INTS || a.r#type == 0 => Ok(Some(a.ints.clone())),
            Some(_) => Err(self.err(format!("attribute '{name}' is not an integer list"))),
        }
    }

    /// Float-list attribute, `None` when absent.
    pub fn floats(&self, name: &str) -> Result<Option<Vec<f32>>, OnnxError> {
        match self.attrs.get(name) {
            None => Ok(None),
            Some(a) if a.r#type == at::FLOATS || a.r#type == 0 => Ok(Some(a.floats.clone())),
            Some(_) => Err(self.err(format!("attribute '{name}' is not a float list"))),
        }
    }

    /// String attribute or `default`.
    pub fn string(&self, name: &str, default: &str) -> Result<String, OnnxError> {
        match self.attrs.get(name) {
            None => Ok(default.to_string()),
            Some(a) if a.r#type == at::STRING || a.r#type == 0 => Ok(String::from_utf8_lossy(&a.s).into_owned()),
            Some(_) => Err(self.err(format!("attribute '{name}' is not a string"))),
        }
    }

    /// Tensor attribute, `None` when absent.
    pub fn tensor(&self, name: &str) -> Result<Option<ConstTensor>, OnnxError> {
        match self.attrs.get(name) {
            None => Ok(None),
            Some(a) if a.r#type == at::TENSOR || (a.r#type == 0 && a.t.is_some()) => match &a.t {
                Some(t) => Ok(Some(ConstTensor::from_proto(t)?)),
                None => Err(self.err(format!("attribute '{name}' holds no tensor"))),
            },
            Some(_) => Err(self.err(format!("attribute '{name}' is not a tensor"))),
        }
    }
}

impl OnnxGraph {
    /// Decode an ONNX file; a truncated or foreign file gives [`OnnxError::Format`] naming it.
    pub fn load(path: &Path) -> Result<Self, OnnxError> {
        let bytes = std::fs::read(path).map_err(|e| OnnxError::Io { path: path.to_path_buf(), msg: e.to_string() })?;
        Self::decode(&bytes).map_err(|e| match e {
            OnnxError::Format { msg, .. } => OnnxError::Format { path: path.to_path_buf(), msg },
            other => other,
        })
    }

    /// Decode ONNX protobuf bytes (errors carry an empty path; [`load`](Self::load) fills it in).
    pub fn decode(bytes: &[u8]) -> Result<Self, OnnxError> {
        let fmt = |msg: String| OnnxError::Format { path: Default::default(), msg };
        let model = ModelProto::decode(bytes)
            .map_err(|e| fmt(format!("protobuf decoding failed ({e}); the file is truncated or not ONNX")))?;
        if model.ir_version <= 0 || model.ir_version > 100 {
            return Err(fmt(format!("ir_version {} is not a valid ONNX IR version", model.ir_version)));
        }
        let Some(graph) = model.graph else {
            return Err(fmt("the model has no graph".into()));
        };
        if graph.node.is_empty() {
            return Err(fmt("the graph has no nodes".into()));
        }
        let opset = model
            .opset_import
            .iter()
            .filter(|o| o.domain.is_empty() || o.domain == "ai.onnx")
            .map(|o| o.version)
            .max()
            .unwrap_or(1);
        let mut initializers = HashMap::new();
        let mut initializer_order = Vec::new();
        for t in &graph.initializer {
            let c = ConstTensor::from_proto(t)?;
            if initializers.insert(t.name.clone(), c).is_none() {
                initializer_order.push(t.name.clone());
            }
        }
        let mut inputs = Vec::new();
        for vi in &graph.input {
            if initializers.contains_key(&vi.name) {
                continue;
            }
            let tt = vi.r#type.as_ref().and_then(|t| t.tensor_type.as_ref());
            let dims = tt
                .and_then(|t| t.shape.as_ref())
                .map(|s| s.dim.iter().map(|d| d.dim_value.filter(|&v| v > 0).map(|v| v as usize)).collect::<Vec<_>>())
                .unwrap_or_default();
            let is_int = tt.map(|t| is_int_type(t.elem_type)).unwrap_or(false);
            inputs.push(GraphInput { name: vi.name.clone(), dims, is_int });
        }
        Ok(OnnxGraph {
            opset,
            nodes: graph.node.iter().map(Node::from_proto).collect(),
            initializers,
            initializer_order,
            inputs,
            outputs: graph.output.iter().map(|o| o.name.clone()).collect(),
        })
    }

    /// Keep only what `outputs` need (tpu-mlir `select_output`): nodes not backward-reachable,
    /// unused initializers and unused inputs are dropped; the outputs become exactly `outputs`
    /// in that order. With an empty list the graph outputs are kept. Unknown names are an error
    /// listing all of them.
    pub fn select_outputs(&mut self, outputs: &[String]) -> Result<(), OnnxError> {
        if !outputs.is_empty() {
            let mut known: HashSet<&str> = HashSet::new();
            for n in &self.nodes {
                known.extend(n.outputs.iter().map(|s| s.as_str()));
            }
            known.extend(self.inputs.iter().map(|i| i.name.as_str()));
            known.extend(self.initializers.keys().map(|s| s.as_str()));
            let missing: Vec<String> = outputs.iter().filter(|o| !known.contains(o.as_str())).cloned().collect();
            if !missing.is_empty() {
                return Err(OnnxError::OutputNotFound(missing));
            }
            self.outputs = outputs.to_vec();
        }
        let mut need: HashSet<String> = self.outputs.iter().cloned().collect();
        let mut keep = vec![false; self.nodes.len()];
        for (i, n) in self.nodes.iter().enumerate().rev() {
            if n.outputs.iter().any(|o| need.contains(o)) {
                keep[i] = true;
                need.extend(n.inputs.iter().filter(|s| !s.is_empty()).cloned());
            }
        }
        let nodes = std::mem::take(&mut self.nodes);
        self.nodes = nodes.into_iter().zip(keep).filter(|(_, k)| *k).map(|(n, _)| n).collect();
        self.initializers.retain(|k, _| need.contains(k));
        self.initializer_order.retain(|k| need.contains(k));
        self.inputs.retain(|i| need.contains(&i.name));
        Ok(())
    }

    /// Number of values the graph defines (inputs, initializers, node outputs). onnxsim's
    /// optimizer numbers the tensors it creates after this count; see [`super::fuse`].
    pub fn value_count(&self) -> usize {
        self.inputs.len() + self.initializers.len() + self.nodes.iter().map(|n| n.outputs.len()).sum::<usize>()
    }
}
