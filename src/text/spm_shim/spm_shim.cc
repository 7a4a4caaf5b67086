// A C-ABI shim over Debian's libsentencepiece and libsentencepiece_train.
//
// Why this exists: libsentencepiece embeds and exports its own protobuf-lite. Linked into
// a process that also loads LibTorch (which pulls in libprotobuf), the two clash during
// static initialisation and the process segfaults. This shim is built as a separate
// MODULE library and opened with dlopen(RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND), so its
// symbols bind to its own sentencepiece/protobuf first. Only plain C types cross the
// boundary: handles are opaque pointers, strings are (pointer, length) pairs, and every
// buffer the shim allocates is released with safetune_spm_free.
#include <sentencepiece_processor.h>
#include <sentencepiece_trainer.h>

#include <dlfcn.h>
#include <ext/stdio_sync_filebuf.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <new>
#include <string>
#include <vector>

namespace sentencepiece::logging {
void SetMinLogLevel(int v);  // exported by libsentencepiece, not declared in its headers
}

namespace {

// RTLD_DEEPBIND has a cost: when the executable uses std::cerr/std::cout, the linker
// copies those objects into the executable and libstdc++ constructs only that copy. This
// library (and sentencepiece, which logs to std::cerr) binds to libstdc++'s own, never
// constructed objects, and the first log line would crash. Construct them here, writing
// to the same C streams.
void construct_std_streams() {
  struct Stream { std::ostream* here; const char* name; FILE* file; };
  static __gnu_cxx::stdio_sync_filebuf<char> out_buf(stdout), err_buf(stderr);
  for (Stream s : {Stream{&std::cout, "_ZSt4cout", stdout}, Stream{&std::cerr, "_ZSt4cerr", stderr},
                   Stream{&std::clog, "_ZSt4clog", stderr}}) {
    void* global = dlsym(RTLD_DEFAULT, s.name);
    if (global == nullptr || global == static_cast<void*>(s.here)) continue;  // the same object
    new (s.here) std::ostream(s.file == stdout ? static_cast<std::streambuf*>(&out_buf) : &err_buf);
  }
}

__attribute__((constructor)) void on_load() {
  construct_std_streams();
  sentencepiece::logging::SetMinLogLevel(1);  // warnings and errors only
}

// Copies `s` into a malloc'ed, NUL-terminated buffer the caller frees with
// safetune_spm_free (so allocation and release happen in the same library).
char* dup_string(const std::string& s, size_t* len) {
  char* out = static_cast<char*>(std::malloc(s.size() + 1));
  if (!out) return nullptr;
  std::memcpy(out, s.data(), s.size());
  out[s.size()] = '\0';
  if (len) *len = s.size();
  return out;
}

void set_error(char** err, const std::string& message) {
  if (err) *err = dup_string(message, nullptr);
}

}  // namespace

extern "C" {

// ABI version: the loader checks it so a stale shim beside the binary fails clearly.
int safetune_spm_abi_version() { return 1; }

void safetune_spm_free(void* p) { std::free(p); }

// Loads a .model file. Returns a handle, or null with *err set (free with safetune_spm_free).
void* safetune_spm_load(const char* path, char** err) {
  try {
    auto* sp = new sentencepiece::SentencePieceProcessor();
    auto status = sp->Load(path);
    if (!status.ok()) {
      set_error(err, status.ToString());
      delete sp;
      return nullptr;
    }
    return sp;
  } catch (const std::exception& e) {
    set_error(err, e.what());
    return nullptr;
  }
}

void safetune_spm_destroy(void* handle) {
  delete static_cast<sentencepiece::SentencePieceProcessor*>(handle);
}

// Encodes `len` bytes of text. On success returns 0 and sets *ids (malloc'ed, free with
// safetune_spm_free) and *n_ids; on failure returns -1 with *err set.
int safetune_spm_encode(void* handle, const char* text, size_t len, int** ids, size_t* n_ids,
                        char** err) {
  try {
    auto* sp = static_cast<sentencepiece::SentencePieceProcessor*>(handle);
    std::vector<int> out;
    auto status = sp->Encode(absl::string_view(text, len), &out);
    if (!status.ok()) {
      set_error(err, status.ToString());
      return -1;
    }
    *n_ids = out.size();
    *ids = static_cast<int*>(std::malloc(std::max<size_t>(1, out.size()) * sizeof(int)));
    if (!*ids) {
      set_error(err, "out of memory");
      return -1;
    }
    if (!out.empty()) std::memcpy(*ids, out.data(), out.size() * sizeof(int));
    return 0;
  } catch (const std::exception& e) {
    set_error(err, e.what());
    return -1;
  }
}

// Decodes ids to text: returns a malloc'ed string (length in *len), or null with *err set.
char* safetune_spm_decode(void* handle, const int* ids, size_t n_ids, size_t* len, char** err) {
  try {
    auto* sp = static_cast<sentencepiece::SentencePieceProcessor*>(handle);
    std::vector<int> in(ids, ids + n_ids);
    std::string text;
    auto status = sp->Decode(in, &text);
    if (!status.ok()) {
      set_error(err, status.ToString());
      return nullptr;
    }
    return dup_string(text, len);
  } catch (const std::exception& e) {
    set_error(err, e.what());
    return nullptr;
  }
}

int safetune_spm_vocab_size(void* handle) {
  return static_cast<sentencepiece::SentencePieceProcessor*>(handle)->GetPieceSize();
}

// The piece of `id` (a pointer into the model, valid while the handle lives), or null
// when out of range.
const char* safetune_spm_id_to_piece(void* handle, int id, size_t* len) {
  auto* sp = static_cast<sentencepiece::SentencePieceProcessor*>(handle);
  if (id < 0 || id >= sp->GetPieceSize()) return nullptr;
  const std::string& piece = sp->IdToPiece(id);
  *len = piece.size();
  return piece.c_str();
}

// The id of a piece, or -1 when the model has no such piece (sentencepiece itself maps
// unknown pieces to unk_id, which cannot be told apart from the real <unk>).
int safetune_spm_piece_to_id(void* handle, const char* piece, size_t len) {
  auto* sp = static_cast<sentencepiece::SentencePieceProcessor*>(handle);
  absl::string_view p(piece, len);
  int id = sp->PieceToId(p);
  if (id == sp->unk_id() && sp->IdToPiece(id) != std::string(piece, len)) return -1;
  return id;
}

int safetune_spm_bos_id(void* handle) {
  return static_cast<sentencepiece::SentencePieceProcessor*>(handle)->bos_id();
}
int safetune_spm_eos_id(void* handle) {
  return static_cast<sentencepiece::SentencePieceProcessor*>(handle)->eos_id();
}
int safetune_spm_unk_id(void* handle) {
  return static_cast<sentencepiece::SentencePieceProcessor*>(handle)->unk_id();
}
int safetune_spm_pad_id(void* handle) {
  return static_cast<sentencepiece::SentencePieceProcessor*>(handle)->pad_id();
}
int safetune_spm_is_control(void* handle, int id) {
  return static_cast<sentencepiece::SentencePieceProcessor*>(handle)->IsControl(id) ? 1 : 0;
}
int safetune_spm_is_byte(void* handle, int id) {
  return static_cast<sentencepiece::SentencePieceProcessor*>(handle)->IsByte(id) ? 1 : 0;
}
int safetune_spm_is_unknown(void* handle, int id) {
  return static_cast<sentencepiece::SentencePieceProcessor*>(handle)->IsUnknown(id) ? 1 : 0;
}

// Trains a model with sentencepiece's command-line style arguments, e.g.
// "--input=x.txt --model_prefix=m --vocab_size=500 --model_type=bpe --byte_fallback=true".
// Returns 0, or -1 with *err set.
int safetune_spm_train(const char* args, char** err) {
  try {
    auto status = sentencepiece::SentencePieceTrainer::Train(absl::string_view(args));
    if (!status.ok()) {
      set_error(err, status.ToString());
      return -1;
    }
    return 0;
  } catch (const std::exception& e) {
    set_error(err, e.what());
    return -1;
  }
}

}  // extern "C"
