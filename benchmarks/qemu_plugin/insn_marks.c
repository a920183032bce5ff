/*
 * insn_marks: a qemu TCG plugin that counts guest instructions and records the running count
 * whenever the guest makes the marker system call (number MARK_SYSCALL, first argument a label).
 *
 * benchmarks/pi.py builds it against qemu's plugin header and loads it with
 *   qemu-aarch64 -plugin insn_marks.so,out=FILE ...
 * The guest (benchmarks/pi_workload.py) brackets each timed loop with two marker calls, so the
 * count of one loop excludes interpreter start-up and imports. The count is added inline once per
 * translated block (qemu_plugin_tb_n_insns), the cheapest exact way at block granularity; a
 * system call ends a block, so the count at a marker is exact. Guest threads share one counter:
 * the workload pins every library to one thread.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <qemu-plugin.h>

QEMU_PLUGIN_EXPORT int qemu_plugin_version = QEMU_PLUGIN_VERSION;

#define MARK_SYSCALL 0x5E5E

static uint64_t executed;
static FILE *out;

static void on_translate(qemu_plugin_id_t id, struct qemu_plugin_tb *tb)
{
    (void)id;
    qemu_plugin_register_vcpu_tb_exec_inline(tb, QEMU_PLUGIN_INLINE_ADD_U64, &executed,
                                             qemu_plugin_tb_n_insns(tb));
}

static void on_syscall(qemu_plugin_id_t id, unsigned int vcpu, int64_t num, uint64_t a1,
                       uint64_t a2, uint64_t a3, uint64_t a4, uint64_t a5, uint64_t a6,
                       uint64_t a7, uint64_t a8)
{
    (void)id; (void)vcpu; (void)a2; (void)a3; (void)a4; (void)a5; (void)a6; (void)a7; (void)a8;
    if (num == MARK_SYSCALL) {
        fprintf(out, "mark %" PRIu64 " %" PRIu64 "\n", a1, executed);
        fflush(out);
    }
}

static void on_plugin_exit(qemu_plugin_id_t id, void *userdata)
{
    (void)id; (void)userdata;
    fprintf(out, "total %" PRIu64 "\n", executed);
    fclose(out);
}

QEMU_PLUGIN_EXPORT int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info,
                                           int argc, char **argv)
{
    (void)info;
    const char *path = NULL;
    for (int i = 0; i < argc; i++) {
        if (strncmp(argv[i], "out=", 4) == 0) {
            path = argv[i] + 4;
        }
    }
    out = path ? fopen(path, "w") : stderr;
    if (out == NULL) {
        return -1;
    }
    qemu_plugin_register_vcpu_tb_trans_cb(id, on_translate);
    qemu_plugin_register_vcpu_syscall_cb(id, on_syscall);
    qemu_plugin_register_atexit_cb(id, on_plugin_exit, NULL);
    return 0;
}
