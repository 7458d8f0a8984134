// Numbers and durations as lofi prints them, in one place: tables, progress lines, messages.
#pragma once
#include <string>

namespace lofi {

std::string format_fixed(double value, int decimals);  // 3.14159, 2 -> "3.14"
std::string format_general(double value, int digits);  // %g with DIGITS significant digits: 0.1, 9 -> "0.1"
std::string format_seconds(double seconds, int decimals);  // 2.25, 1 -> "2.2 s"
std::string format_clock(double seconds);              // to the nearest second: 3725.4 -> "1:02:05"
std::string format_bytes(double bytes);                // "0 B", "12.3 MB", ... (powers of 1000)

}  // namespace lofi
