// n8n Code node ("Run Once for All Items"): an Open Inference Protocol
// request for the picked model, shaped by the inputs its server declares
// (GET metadata_url): zeros, a dynamic dimension taken as 1. Put your own
// data in "data".
const metadata = $input.first().json;
const entry = $("Pick the model's production entry").first().json;
const inputs = (metadata.inputs || []).map((input) => {
  const shape = (input.shape || [1]).map((d) => (typeof d === 'number' && d > 0 ? d : 1));
  const size = shape.reduce((a, b) => a * b, 1);
  return { name: input.name, shape, datatype: input.datatype || 'FP32', data: Array(size).fill(0) };
});
return [{ json: { invoke_url: entry.invoke_url, version: entry.version, request: { inputs } } }];
