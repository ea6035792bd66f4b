# Builds testdata/opmix.onnx (one-off, needs onnx + onnxruntime) and prints ONNX Runtime's outputs
# for the ramp input; the Rust test onnx::tests::op_mix_matches_onnxruntime embeds them.
import numpy as np, onnx, onnxruntime as ort
from onnx import helper as h, TensorProto as T, numpy_helper as nh
rs=lambda n,shape: (np.sin(np.arange(n, dtype=np.float64)*0.7+0.3)*0.8).astype(np.float32).reshape(shape)
inits=[nh.from_array(rs(54,(2,3,3,3)),'wt'), nh.from_array(np.array([0.1,-0.2,0.05],np.float32),'bt'),
 nh.from_array(np.array(-0.5,np.float32),'lo'), nh.from_array(np.array(0.5,np.float32),'hi'),
 nh.from_array(np.array([0,0,1,0,0,0,0,1],np.int64),'pads'),
 nh.from_array(np.array([1],np.int64),'st'), nh.from_array(np.array([-1],np.int64),'en'), nh.from_array(np.array([3],np.int64),'ax'), nh.from_array(np.array([2],np.int64),'sp'),
 nh.from_array(rs(24,(4,6)),'wg'), nh.from_array(np.array([0.3,-0.1,0.2,0.0],np.float32),'cg'),
 nh.from_array(np.array([0.25,0.5,-1.0,2.0],np.float32),'slope'),
 nh.from_array(np.array([1,1,2,2],np.float32),'scl'), nh.from_array(np.array([],np.float32),'roi'),
 nh.from_array(np.array([1,1],np.int64),'splits'),
]
nodes=[
 h.make_node('ConvTranspose',['x','wt','bt'],['a'],strides=[2,2],pads=[1,1,1,1],output_padding=[1,1]),
 h.make_node('AveragePool',['a'],['b'],kernel_shape=[3,3],strides=[2,2],ceil_mode=1),
 h.make_node('Clip',['b','lo','hi'],['c']),
 h.make_node('HardSigmoid',['c'],['d'],alpha=0.3,beta=0.4),
 h.make_node('Pad',['d','pads'],['e'],mode='reflect'),
 h.make_node('Slice',['e','st','en','ax','sp'],['f']),
 h.make_node('Transpose',['f'],['g'],perm=[0,2,3,1]),
 h.make_node('Softmax',['g'],['hh'],axis=-1),
 h.make_node('ReduceMean',['hh'],['i'],axes=[1],keepdims=0),
 h.make_node('Flatten',['i'],['j'],axis=1),
 h.make_node('Gemm',['j','wg','cg'],['k'],transB=1,alpha=0.5,beta=2.0),
 h.make_node('PRelu',['k','slope'],['l']),
 h.make_node('Resize',['b','roi','scl'],['r'],mode='linear',coordinate_transformation_mode='half_pixel'),
 h.make_node('Split',['r','splits'],['s0','s1'],axis=1) if False else h.make_node('Split',['r'],['s0','s1','s2'],axis=1),
 h.make_node('Sub',['s2','s0'],['t']),
 h.make_node('GlobalAveragePool',['t'],['u']),
]
g=h.make_graph(nodes,'mix',[h.make_tensor_value_info('x',T.FLOAT,[1,2,5,5])],[h.make_tensor_value_info('l',T.FLOAT,None),h.make_tensor_value_info('u',T.FLOAT,None)],inits)
m=h.make_model(g,opset_imports=[h.make_opsetid('',13)]); m.ir_version=7

onnx.save(m,'opmix.onnx')
x=rs(50,(1,2,5,5))
o=ort.InferenceSession('opmix.onnx').run(None,{'x':x})
for v in o: print(v.shape, v.flatten().tolist())
