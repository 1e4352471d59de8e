/* The probe-cost microbenchmark of `cargo xtask bench --case probe`: calls one small
 * function in a tight loop and prints the time per call. Each function carries, at a
 * global label, one instruction of the kinds the TLS probes can sit on; the benchmark
 * attaches a uprobe there and compares the time per call with none.
 *
 * usage: probe_cost FUNCTION CALLS
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

__asm__(
    ".text\n"
    /* Debian's OpenSSL 3 SSL_read starts like this: single-stepped. */
    ".globl pc_sub\n.type pc_sub,@function\n"
    "pc_sub:\n  sub $0x18,%rsp\n  add $0x18,%rsp\n  ret\n"
    /* OpenSSL's internal functions and Node's SSL_read start with a push: emulated. */
    ".globl pc_push\n.type pc_push,@function\n"
    "pc_push:\n  push %r13\n  pop %r13\n  ret\n"
    /* A conditional jump after a test of the arguments: emulated. */
    ".globl pc_jcc\n.type pc_jcc,@function\n"
    "pc_jcc:\n  test %edi,%edi\n.globl pc_jcc_site\npc_jcc_site:\n  js 1f\n1:\n  ret\n"
    /* Go's inline marks: emulated. */
    ".globl pc_nop\n.type pc_nop,@function\n"
    "pc_nop:\n  nop\n  ret\n"
    /* A call to an internal function: emulated. */
    ".globl pc_call\n.type pc_call,@function\n"
    "pc_call:\n  sub $8,%rsp\n.globl pc_call_site\npc_call_site:\n  call pc_ret\n"
    "  add $8,%rsp\n  ret\n"
    /* Go's RET probes sit on this: single-stepped. */
    ".globl pc_ret\n.type pc_ret,@function\n"
    "pc_ret:\n  ret\n");

void pc_sub(int), pc_push(int), pc_jcc(int), pc_nop(int), pc_call(int), pc_ret(int);

int main(int argc, char **argv) {
    static const struct {
        const char *name;
        void (*f)(int);
    } fs[] = {{"sub", pc_sub}, {"push", pc_push}, {"jcc", pc_jcc},
              {"nop", pc_nop}, {"call", pc_call}, {"ret", pc_ret}};
    if (argc != 3) {
        fprintf(stderr, "usage: %s FUNCTION CALLS\n", argv[0]);
        return 2;
    }
    void (*volatile f)(int) = 0;
    for (size_t i = 0; i < sizeof fs / sizeof fs[0]; i++)
        if (strcmp(argv[1], fs[i].name) == 0)
            f = fs[i].f;
    long n = atol(argv[2]);
    if (!f || n <= 0) {
        fprintf(stderr, "unknown function %s or bad count\n", argv[1]);
        return 2;
    }
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (long i = 0; i < n; i++)
        f(1);
    clock_gettime(CLOCK_MONOTONIC, &b);
    printf("%.1f\n", ((b.tv_sec - a.tv_sec) * 1e9 + (b.tv_nsec - a.tv_nsec)) / n);
    return 0;
}
