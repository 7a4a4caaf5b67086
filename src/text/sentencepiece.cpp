// SentencePieceTokenizer: a Tokenizer over the C functions of libsafetune_spm.so
// (src/text/spm_shim/spm_shim.cc), loaded at run time. See sentencepiece.h for why.
#include "safetune/text/sentencepiece.h"

#include <dlfcn.h>

#include <cstdlib>
#include <filesystem>
#include <mutex>
#include <type_traits>
#include <vector>

#include "safetune/core/error.h"
#include "safetune/core/fs.h"

namespace safetune::text {
namespace {

constexpr const char* kShimName = "libsafetune_spm.so";
constexpr int kShimAbi = 1;

// The shim's entry points, resolved once.
struct Shim {
  std::string path;
  int (*abi_version)();
  void (*free_)(void*);
  void* (*load)(const char*, char**);
  void (*destroy)(void*);
  int (*encode)(void*, const char*, size_t, int**, size_t*, char**);
  char* (*decode)(void*, const int*, size_t, size_t*, char**);
  int (*vocab_size)(void*);
  const char* (*id_to_piece)(void*, int, size_t*);
  int (*piece_to_id)(void*, const char*, size_t);
  int (*bos_id)(void*);
  int (*eos_id)(void*);
  int (*unk_id)(void*);
  int (*pad_id)(void*);
  int (*is_control)(void*, int);
  int (*is_byte)(void*, int);
  int (*train)(const char*, char**);
};

std::vector<std::string> shim_candidates() {
  std::vector<std::string> c;
  std::string exe = executable_dir();
  c.push_back(exe + "/" + kShimName);
  c.push_back(exe + "/../" + kShimName);  // tests/ inside the build directory
  if (const char* env = std::getenv("SAFETUNE_SPM_SHIM"); env && *env) {
    std::string e = env;
    c.push_back(e);
    c.push_back(e + "/" + kShimName);
  }
  return c;
}

const Shim& shim() {
  static std::once_flag once;
  static Shim s;
  static std::string error;
  std::call_once(once, [] {
    void* handle = nullptr;
    std::string tried, last_dl;
    for (const std::string& p : shim_candidates()) {
      tried += (tried.empty() ? "" : ", ") + p;
      if (!path_exists(p) || std::filesystem::is_directory(p)) continue;
      handle = dlopen(p.c_str(), RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND);
      if (handle) { s.path = p; break; }
      const char* e = dlerror();
      last_dl = e ? e : "";
    }
    if (!handle) {
      error = std::string("cannot load ") + kShimName + " (tried " + tried + ")" +
              (last_dl.empty() ? "" : ": " + last_dl) + "; set SAFETUNE_SPM_SHIM to its path";
      return;
    }
    bool ok = true;
    auto sym = [&](auto& fn, const char* name) {
      void* p = dlsym(handle, name);
      if (!p) ok = false;
      fn = reinterpret_cast<std::remove_reference_t<decltype(fn)>>(p);
    };
    sym(s.abi_version, "safetune_spm_abi_version");
    sym(s.free_, "safetune_spm_free");
    sym(s.load, "safetune_spm_load");
    sym(s.destroy, "safetune_spm_destroy");
    sym(s.encode, "safetune_spm_encode");
    sym(s.decode, "safetune_spm_decode");
    sym(s.vocab_size, "safetune_spm_vocab_size");
    sym(s.id_to_piece, "safetune_spm_id_to_piece");
    sym(s.piece_to_id, "safetune_spm_piece_to_id");
    sym(s.bos_id, "safetune_spm_bos_id");
    sym(s.eos_id, "safetune_spm_eos_id");
    sym(s.unk_id, "safetune_spm_unk_id");
    sym(s.pad_id, "safetune_spm_pad_id");
    sym(s.is_control, "safetune_spm_is_control");
    sym(s.is_byte, "safetune_spm_is_byte");
    sym(s.train, "safetune_spm_train");
    if (!ok || s.abi_version() != kShimAbi) {
      error = s.path + ": not a compatible " + kShimName + " (missing symbols or ABI version)";
      s.path.clear();
    }
  });
  if (s.path.empty()) input_error("sentencepiece", error);
  return s;
}

// Takes ownership of a string the shim allocated.
std::string take(const Shim& s, char* p, size_t len) {
  std::string out = p ? std::string(p, len) : std::string();
  s.free_(p);
  return out;
}
std::string take_error(const Shim& s, char* err) {
  std::string out = err ? std::string(err) : std::string("unknown error");
  s.free_(err);
  return out;
}

class SentencePieceTokenizer final : public Tokenizer {
 public:
  SentencePieceTokenizer(const Shim& s, void* handle, std::string path)
      : s_(s), h_(handle), path_(std::move(path)) {
    auto opt = [](int id) { return id >= 0 ? std::optional<int32_t>(id) : std::nullopt; };
    bos_id = opt(s_.bos_id(h_));
    eos_id = opt(s_.eos_id(h_));
    pad_id = opt(s_.pad_id(h_));
  }
  ~SentencePieceTokenizer() override { s_.destroy(h_); }

  std::vector<int32_t> encode(std::string_view text, bool add_bos) const override {
    int* ids = nullptr;
    size_t n = 0;
    char* err = nullptr;
    if (s_.encode(h_, text.data(), text.size(), &ids, &n, &err) != 0)
      input_error(path_, "sentencepiece encode failed: " + take_error(s_, err));
    std::vector<int32_t> out;
    out.reserve(n + 1);
    if (add_bos && bos_id) out.push_back(*bos_id);
    out.insert(out.end(), ids, ids + n);
    s_.free_(ids);
    return out;
  }

  std::string decode(const std::vector<int32_t>& ids, bool skip_special) const override {
    std::vector<int> in;
    in.reserve(ids.size());
    int vocab = s_.vocab_size(h_);
    for (int32_t id : ids) {
      if (id < 0 || id >= vocab) continue;
      // sentencepiece drops control pieces itself; skip_special also drops <unk>.
      if (skip_special && is_special(id)) continue;
      in.push_back(id);
    }
    size_t len = 0;
    char* err = nullptr;
    char* text = s_.decode(h_, in.data(), in.size(), &len, &err);
    if (!text) input_error(path_, "sentencepiece decode failed: " + take_error(s_, err));
    return take(s_, text, len);
  }

  std::string id_to_piece(int32_t id) const override {
    size_t len = 0;
    const char* p = s_.id_to_piece(h_, id, &len);
    return p ? std::string(p, len) : std::string();
  }
  std::optional<int32_t> piece_to_id(std::string_view piece) const override {
    int id = s_.piece_to_id(h_, piece.data(), piece.size());
    return id >= 0 ? std::optional<int32_t>(id) : std::nullopt;
  }
  int64_t vocab_size() const override { return s_.vocab_size(h_); }
  bool is_special(int32_t id) const override {
    if (id < 0 || id >= s_.vocab_size(h_)) return false;
    return s_.is_control(h_, id) != 0 || id == s_.unk_id(h_);
  }
  std::string kind() const override { return "sentencepiece"; }

 private:
  const Shim& s_;
  void* h_;
  std::string path_;
};

}  // namespace

std::string sentencepiece_shim_path() { return shim().path; }

std::unique_ptr<Tokenizer> load_sentencepiece(const std::string& model_path) {
  if (!path_exists(model_path)) input_error(model_path, "no such file");
  const Shim& s = shim();
  char* err = nullptr;
  void* h = s.load(model_path.c_str(), &err);
  if (!h) input_error(model_path, "not a SentencePiece model: " + take_error(s, err));
  return std::make_unique<SentencePieceTokenizer>(s, h, model_path);
}

void train_sentencepiece(const std::string& input_text_file, const std::string& model_prefix,
                         int vocab_size, const std::string& model_type, bool byte_fallback,
                         const std::string& extra_args) {
  if (!path_exists(input_text_file)) input_error(input_text_file, "no such file");
  if (vocab_size < 8) input_error("vocab_size", "must be at least 8, got " + std::to_string(vocab_size));
  if (model_type != "bpe" && model_type != "unigram")
    input_error("model_type", "expected bpe or unigram, got '" + model_type + "'");
  // Paths go through sentencepiece's flag parser, which splits on spaces.
  for (const std::string& p : {input_text_file, model_prefix})
    if (p.find(' ') != std::string::npos) input_error(p, "sentencepiece training paths cannot contain spaces");
  std::string args = "--input=" + input_text_file + " --model_prefix=" + model_prefix +
                     " --vocab_size=" + std::to_string(vocab_size) + " --model_type=" + model_type +
                     " --byte_fallback=" + (byte_fallback ? "true" : "false") +
                     " --character_coverage=1.0 --minloglevel=2";
  if (!extra_args.empty()) args += " " + extra_args;
  const Shim& s = shim();
  char* err = nullptr;
  if (s.train(args.c_str(), &err) != 0)
    input_error(input_text_file, "sentencepiece training failed: " + take_error(s, err));
}

}  // namespace safetune::text
