#include "text/unicode.hpp"

#include <algorithm>
#include <array>

namespace realm::text {

namespace ud = unicode_data;

namespace {

// Direct lookup for the first 64K code points, built once from the run table.
struct CategoryCache {
    std::array<Category, 0x10000> bmp{};
    CategoryCache() {
        for (size_t i = 0; i < ud::kCategoryRunCount; ++i) {
            const uint32_t start = ud::kCategoryRuns[i].start;
            if (start >= 0x10000) break;
            const uint32_t end =
                i + 1 < ud::kCategoryRunCount ? std::min<uint32_t>(ud::kCategoryRuns[i + 1].start, 0x10000) : 0x10000;
            std::fill(bmp.begin() + start, bmp.begin() + end, ud::kCategoryRuns[i].category);
        }
    }
};

const CategoryCache& category_cache() {
    static const CategoryCache cache;
    return cache;
}

}  // namespace

Category unicode_category(uint32_t cp) {
    if (cp < 0x10000) return category_cache().bmp[cp];
    if (cp > 0x10FFFF) return Category::Unassigned;
    const auto* begin = ud::kCategoryRuns;
    const auto* end = ud::kCategoryRuns + ud::kCategoryRunCount;
    const auto* it = std::upper_bound(begin, end, cp, [](uint32_t v, const ud::CategoryRun& r) { return v < r.start; });
    return it == begin ? Category::Unassigned : (it - 1)->category;
}

bool is_whitespace(uint32_t cp) {
    if (cp < 0x80) return cp == ' ' || (cp >= 0x09 && cp <= 0x0D);
    switch (cp) {
        case 0x85:
        case 0xA0:
        case 0x1680:
        case 0x2028:
        case 0x2029:
        case 0x202F:
        case 0x205F:
        case 0x3000:
            return true;
        default:
            return cp >= 0x2000 && cp <= 0x200A;
    }
}

uint32_t to_lower(uint32_t cp) {
    if (cp < 0x80) return (cp >= 'A' && cp <= 'Z') ? cp + 32 : cp;
    const auto* begin = ud::kLowerRanges;
    const auto* end = ud::kLowerRanges + ud::kLowerRangeCount;
    const auto* it = std::upper_bound(begin, end, cp, [](uint32_t v, const ud::CaseRange& r) { return v < r.first; });
    if (it == begin) return cp;
    const auto& r = *(it - 1);
    if (cp > r.last || (cp - r.first) % r.stride != 0) return cp;
    return static_cast<uint32_t>(static_cast<int64_t>(cp) + r.delta);
}

void append_stripped_accents(std::vector<uint32_t>& out, uint32_t cp) {
    // Hangul syllables decompose algorithmically (Unicode ch. 3.12).
    constexpr uint32_t kSBase = 0xAC00, kLBase = 0x1100, kVBase = 0x1161, kTBase = 0x11A7;
    constexpr uint32_t kVCount = 21, kTCount = 28, kNCount = kVCount * kTCount, kSCount = 19 * kNCount;
    if (cp >= kSBase && cp < kSBase + kSCount) {
        const uint32_t s = cp - kSBase;
        out.push_back(kLBase + s / kNCount);
        out.push_back(kVBase + (s % kNCount) / kTCount);
        if (s % kTCount != 0) out.push_back(kTBase + s % kTCount);
        return;
    }
    if (cp >= 0x80) {
        const auto* xb = ud::kStripExpansions;
        const auto* xe = ud::kStripExpansions + ud::kStripExpansionCount;
        const auto* x = std::lower_bound(xb, xe, cp, [](const ud::StripExpansion& e, uint32_t v) { return e.cp < v; });
        if (x != xe && x->cp == cp) {
            for (uint32_t c : x->cps) {
                if (c != 0) out.push_back(c);
            }
            return;
        }
        const auto* begin = ud::kStripRanges;
        const auto* end = ud::kStripRanges + ud::kStripRangeCount;
        const auto* it =
            std::upper_bound(begin, end, cp, [](uint32_t v, const ud::StripRange& r) { return v < r.first; });
        if (it != begin && cp <= (it - 1)->last) {
            if ((it - 1)->base != 0) out.push_back((it - 1)->base);
            return;
        }
    }
    if (!is_nonspacing_mark(cp)) out.push_back(cp);
}

}  // namespace realm::text
