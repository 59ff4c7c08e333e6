/* read_rate.c -- how fast this machine reads a mapped file that is already in the page cache:
 * THREADS threads (OpenMP) each stream their half of the file through 512-bit (AVX-512), 256-bit
 * (AVX2) or 64-bit loads, doing nothing with the bytes but an XOR, 5 passes, each printed.
 * The ceiling a decode step (which reads every weight once) could reach; benchmarks/read_rate.sh.
 *
 *   read_rate FILE [THREADS]
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#if defined(__AVX512F__) || defined(__AVX2__)
#include <immintrin.h>
#endif

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static uint64_t stream(const unsigned char *p, size_t n) {
#if defined(__AVX512F__)
    __m512i a = _mm512_setzero_si512(), b = a;
    size_t i = 0;
    for (; i + 128 <= n; i += 128) {
        a = _mm512_xor_si512(a, _mm512_loadu_si512(p + i));
        b = _mm512_xor_si512(b, _mm512_loadu_si512(p + i + 64));
    }
    uint64_t r[8];
    _mm512_storeu_si512(r, _mm512_xor_si512(a, b));
    return r[0] ^ r[7] ^ i;
#elif defined(__AVX2__)
    __m256i a = _mm256_setzero_si256(), b = a;
    size_t i = 0;
    for (; i + 64 <= n; i += 64) {
        a = _mm256_xor_si256(a, _mm256_loadu_si256((const __m256i *)(p + i)));
        b = _mm256_xor_si256(b, _mm256_loadu_si256((const __m256i *)(p + i + 32)));
    }
    uint64_t r[4];
    _mm256_storeu_si256((__m256i *)r, _mm256_xor_si256(a, b));
    return r[0] ^ r[3] ^ i;
#else
    uint64_t a = 0, v;
    for (size_t i = 0; i + 8 <= n; i += 8) {
        __builtin_memcpy(&v, p + i, 8);
        a ^= v;
    }
    return a;
#endif
}

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    const int threads = argc > 2 ? atoi(argv[2]) : 2;
    const int fd = open(argv[1], O_RDONLY);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0 || st.st_size < 4096) return 1;
    const size_t n = (size_t)st.st_size;
    const unsigned char *p = mmap(NULL, n, PROT_READ, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) return 1;
    uint64_t sink = 0;
    printf("%s: %.2f GB, %d threads\n", argv[1], n / 1e9, threads);
    for (int pass = 0; pass < 6; pass++) {
        const double t0 = now();
#pragma omp parallel for num_threads(threads) reduction(^ : sink) schedule(static)
        for (int t = 0; t < threads; t++) {
            const size_t lo = n / threads * t, hi = t == threads - 1 ? n : n / threads * (t + 1);
            sink ^= stream(p + lo, hi - lo);
        }
        const double el = now() - t0;
        if (pass) printf("pass %d: %.1f GB/s\n", pass, n / el / 1e9); /* pass 0 faults the pages in */
    }
    return (int)(sink & 0); /* the XOR keeps the loads */
}
