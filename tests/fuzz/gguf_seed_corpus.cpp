// Writes the GGUF fuzzer's seed corpus: gguf_seed_corpus DIR
#include <cstdio>

#include "seeds.hpp"

int main(int argc, char** argv) {
    if (argc != 2) {
        std::fprintf(stderr, "usage: %s CORPUS_DIR\n", argv[0]);
        return 2;
    }
    const int n = realm::gguf::fuzz::write_seeds(argv[1]);
    if (n < 0) return 1;
    std::printf("wrote %d seed files to %s\n", n, argv[1]);
    return 0;
}
