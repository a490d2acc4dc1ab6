// n8n Code node ("Run Once for All Items"): from GET /mlops/api/v1/endpoints,
// the live production entry of the model named in the "Settings" node.
const model = $('Settings').first().json.model;
const registry = $input.first().json;
const entry = (registry.items || []).find(
  (e) => e.model === model && e.environment === 'production' && e.state === 'active',
);
if (!entry) {
  throw new Error(`no live production endpoint for ${model} in the registry`);
}
return [
  {
    json: {
      invoke_url: entry.invoke_url,
      metadata_url: entry.metadata_url,
      version: entry.version,
    },
  },
];
