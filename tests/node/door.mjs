// OpenAI's Node SDK against the studio's /v1/ door: generate, edit with a mask, and the
// error a bad key gets. Prints one JSON line for tests/test_node_sdk.py to check.
// Usage: node tests/node/door.mjs BASE_URL TOKEN SOURCE.png MASK.png
import { readFileSync } from "node:fs";
import OpenAI, { toFile } from "openai";

const [baseURL, apiKey, sourcePath, maskPath] = process.argv.slice(2);
const client = new OpenAI({ baseURL, apiKey, maxRetries: 0 });
const result = {};

const generated = await client.images.generate({
  model: "gpt-image-2",
  prompt: 'A poster that says "NODE"',
  size: "1024x1024",
  quality: "low",
});
result.generate = {
  images: generated.data.length,
  b64_length: generated.data[0].b64_json.length,
  output_tokens: generated.usage.output_tokens,
};

const edited = await client.images.edit({
  model: "gpt-image-2",
  image: await toFile(readFileSync(sourcePath), "room.png", { type: "image/png" }),
  mask: await toFile(readFileSync(maskPath), "mask.png", { type: "image/png" }),
  prompt: 'Put a sign that says "OPEN" in the window',
  quality: "low",
});
result.edit = { images: edited.data.length, b64_length: edited.data[0].b64_json.length };

const stream = await client.images.generate({
  model: "gpt-image-2",
  prompt: 'A poster that says "STREAM"',
  size: "1024x1024",
  quality: "low",
  stream: true,
  partial_images: 2,
});
result.stream = [];
for await (const event of stream) result.stream.push(event.type);

try {
  await new OpenAI({ baseURL, apiKey: "sts_wrong", maxRetries: 0 }).images.generate({
    prompt: "x",
  });
  result.bad_key = "accepted";
} catch (error) {
  result.bad_key = { status: error.status, code: error.code, name: error.constructor.name };
}

try {
  await client.images.generate({ prompt: "x", size: "1000x1000" });
  result.bad_size = "accepted";
} catch (error) {
  result.bad_size = { status: error.status, param: error.param };
}
console.log(JSON.stringify(result));
