#include "lofi/demo/shipped_vit.h"

#include "lofi/io/atomic_file.h"

// The file's bytes go into read-only data with the assembler's .incbin: C++17 has no #embed, and
// a generated 2 MB array literal would cost the compiler far more than this one directive.
// LOFI_SHIPPED_VIT is the file's absolute path (CMakeLists.txt, which also rebuilds this object
// when the file changes).
__asm__(".pushsection .rodata\n"
        ".balign 64\n"
        ".global lofi_shipped_vit_begin\n"
        ".hidden lofi_shipped_vit_begin\n"
        "lofi_shipped_vit_begin:\n"
        ".incbin \"" LOFI_SHIPPED_VIT "\"\n"
        ".global lofi_shipped_vit_end\n"
        ".hidden lofi_shipped_vit_end\n"
        "lofi_shipped_vit_end:\n"
        ".popsection\n");
extern "C" const char lofi_shipped_vit_begin[];
extern "C" const char lofi_shipped_vit_end[];

namespace lofi::demo {

std::string_view shipped_vision_pretrained() {
  return {lofi_shipped_vit_begin, static_cast<size_t>(lofi_shipped_vit_end - lofi_shipped_vit_begin)};
}

void write_shipped_vision_pretrained(const std::string& path) {
  const std::string_view bytes = shipped_vision_pretrained();
  io::AtomicFile file(path);
  file.write(bytes.data(), bytes.size());
  file.commit();
}

}  // namespace lofi::demo
