// The library's version string (the CLI prints it for --version).
namespace safetune {
const char* version() { return SAFETUNE_VERSION; }
}  // namespace safetune
