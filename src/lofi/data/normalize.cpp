#include "lofi/data/normalize.h"

#include <unicode/bytestream.h>
#include <unicode/normalizer2.h>
#include <unicode/utypes.h>

#include "lofi/error.h"

namespace lofi::data {

std::string nfc(std::string_view text) {
  UErrorCode err = U_ZERO_ERROR;
  const icu::Normalizer2* normalizer = icu::Normalizer2::getNFCInstance(err);
  if (U_FAILURE(err)) fail("tokenizer: ICU's NFC normaliser is unavailable: ", u_errorName(err));
  const icu::StringPiece in(text.data(), static_cast<int32_t>(text.size()));
  if (normalizer->isNormalizedUTF8(in, err) && U_SUCCESS(err)) return std::string(text);  // the common case
  err = U_ZERO_ERROR;
  std::string out;
  icu::StringByteSink<std::string> sink(&out, static_cast<int32_t>(text.size()));
  normalizer->normalizeUTF8(0, in, sink, nullptr, err);
  if (U_FAILURE(err)) fail("tokenizer: NFC normalisation failed: ", u_errorName(err));
  return out;
}

}  // namespace lofi::data
