// n8n Code node ("Run Once for All Items"): from GET /mlops/api/v1/endpoints,
// the production entry of the model named by the n8n variable MLOPS_MODEL,
// and an Open Inference Protocol request shaped by its input schema (zeros:
// put your own data in "data").
const model = $vars.MLOPS_MODEL || 'sentiment';
const registry = $input.first().json;
const entry = (registry.items || []).find(
  (e) => e.model === model && e.environment === 'production' && e.state === 'active',
);
if (!entry) {
  throw new Error(`no live production endpoint for ${model} in the registry`);
}
const schema = Array.isArray(entry.input_schema) ? entry.input_schema : [];
const inputs = schema.map((input) => {
  const shape = (input.shape || [1]).map((d) => (typeof d === 'number' && d > 0 ? d : 1));
  const size = shape.reduce((a, b) => a * b, 1);
  return { name: input.name, shape, datatype: input.datatype || 'FP32', data: Array(size).fill(0) };
});
return [{ json: { invoke_url: entry.invoke_url, version: entry.version, request: { inputs } } }];
