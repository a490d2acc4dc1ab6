// n8n Code node ("Run Once for All Items"): verify a CreativeFlow MLOps
// webhook per Standard Webhooks before trusting it. Needs the environment
// variable MLOPS_WEBHOOK_SECRET (the hook's whsec_... secret) and, for
// require('crypto'), NODE_FUNCTION_ALLOW_BUILTIN=crypto in n8n's environment.
// The Webhook node must keep the raw body (option "Raw Body").
const crypto = require('crypto');

function verify(secret, headers, raw, now) {
  const id = headers['webhook-id'];
  const timestamp = headers['webhook-timestamp'];
  const signatures = (headers['webhook-signature'] || '').split(' ');
  if (!id || !timestamp || !signatures.length) return 'missing webhook headers';
  if (!/^\d+$/.test(timestamp) || Math.abs(now - Number(timestamp)) > 300) {
    return 'timestamp outside the 5-minute window';
  }
  const key = Buffer.from(String(secret).replace(/^whsec_/, ''), 'base64');
  const expected = crypto
    .createHmac('sha256', key)
    .update(Buffer.concat([Buffer.from(`${id}.${timestamp}.`), raw]))
    .digest();
  const match = signatures.some((entry) => {
    const [version, value] = entry.split(',');
    if (version !== 'v1' || !value) return false;
    const given = Buffer.from(value, 'base64');
    return given.length === expected.length && crypto.timingSafeEqual(given, expected);
  });
  return match ? null : 'signature does not match';
}

const results = [];
for (const item of $input.all()) {
  const headers = item.json.headers || {};
  const raw = item.binary && item.binary.data
    ? Buffer.from(item.binary.data.data, 'base64')
    : Buffer.from(typeof item.json.body === 'string' ? item.json.body : JSON.stringify(item.json.body));
  const problem = verify($env.MLOPS_WEBHOOK_SECRET, headers, raw, Math.floor(Date.now() / 1000));
  if (problem) {
    results.push({ json: { valid: false, reason: problem } });
    continue;
  }
  const message = JSON.parse(raw.toString('utf8'));
  results.push({ json: { valid: true, id: headers['webhook-id'], type: message.type, event: message.data } });
}
return results;
