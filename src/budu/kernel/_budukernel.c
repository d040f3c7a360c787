/* The Linux calls budu-runtime needs that Python's os module lacks: mount, umount2, unshare,
 * setns, pivot_root, prctl, sethostname, setdomainname, capget, capset, prlimit, getrlimit and
 * seccomp(SECCOMP_SET_MODE_FILTER) of a BPF program that libseccomp compiled earlier; and
 * start_primer/stop_primer, writes to a cgroup.procs file from a tiny child process (see below).
 *
 * A C extension rather than ctypes because every container start is a fresh interpreter:
 * importing ctypes and declaring the prototypes cost about 4 ms a start, this module ~0.1 ms.
 * Each function is a direct call; it returns the call's result (>= 0) or -errno, and never
 * raises for a failed call: budu/kernel/syscalls.py words the error (naming the operation and
 * its arguments) so that messages stay in Python.  Built by scripts/build-runtime-ext.sh.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

/* "O&" converter: None -> NULL, str or bytes -> bytes (file system encoding). */
static int
opt_path(PyObject *obj, void *out)
{
    if (obj == NULL) { /* cleanup call */
        Py_CLEAR(*(PyObject **)out);
        return 1;
    }
    if (obj == Py_None) {
        *(PyObject **)out = NULL;
        return 1;
    }
    return PyUnicode_FSConverter(obj, out) ? Py_CLEANUP_SUPPORTED : 0;
}

#define STR(o) ((o) ? PyBytes_AS_STRING(o) : NULL)
#define RESULT(r) PyLong_FromLong((r) < 0 ? -errno : (long)(r))

static PyObject *
k_mount(PyObject *self, PyObject *args)
{
    PyObject *source = NULL, *target = NULL, *fstype = NULL, *data = NULL;
    unsigned long flags = 0;
    if (!PyArg_ParseTuple(args, "O&O&O&|kO&", opt_path, &source, opt_path, &target, opt_path, &fstype,
                          &flags, opt_path, &data))
        return NULL;
    int r = mount(STR(source), STR(target), STR(fstype), flags, STR(data));
    PyObject *out = RESULT(r);
    Py_XDECREF(source);
    Py_XDECREF(target);
    Py_XDECREF(fstype);
    Py_XDECREF(data);
    return out;
}

static PyObject *
k_umount2(PyObject *self, PyObject *args)
{
    PyObject *target = NULL;
    int flags = 0;
    if (!PyArg_ParseTuple(args, "O&|i", PyUnicode_FSConverter, &target, &flags))
        return NULL;
    int r = umount2(PyBytes_AS_STRING(target), flags);
    PyObject *out = RESULT(r);
    Py_DECREF(target);
    return out;
}

static PyObject *
k_pivot_root(PyObject *self, PyObject *args)
{
    PyObject *new_root = NULL, *put_old = NULL;
    if (!PyArg_ParseTuple(args, "O&O&", PyUnicode_FSConverter, &new_root, PyUnicode_FSConverter, &put_old))
        return NULL;
    long r = syscall(SYS_pivot_root, PyBytes_AS_STRING(new_root), PyBytes_AS_STRING(put_old));
    PyObject *out = RESULT(r);
    Py_DECREF(new_root);
    Py_DECREF(put_old);
    return out;
}

static PyObject *
k_unshare(PyObject *self, PyObject *args)
{
    int flags;
    if (!PyArg_ParseTuple(args, "i", &flags))
        return NULL;
    int r = unshare(flags);
    return RESULT(r);
}

/* Bring the loopback interface up in the calling process's network namespace, as runc and crun do
 * for a new one (a container with no network still has lo UP with 127.0.0.1). */
static PyObject *
k_loopback_up(PyObject *self, PyObject *noargs)
{
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (s < 0)
        return RESULT(-1);
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    strncpy(ifr.ifr_name, "lo", IFNAMSIZ - 1);
    int r = ioctl(s, SIOCGIFFLAGS, &ifr);
    if (r == 0 && !(ifr.ifr_flags & IFF_UP)) {
        ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
        r = ioctl(s, SIOCSIFFLAGS, &ifr);
    }
    int saved = errno;
    close(s);
    errno = saved;
    return RESULT(r);
}

static PyObject *
k_setns(PyObject *self, PyObject *args)
{
    int fd, nstype;
    if (!PyArg_ParseTuple(args, "ii", &fd, &nstype))
        return NULL;
    int r = setns(fd, nstype);
    return RESULT(r);
}

static PyObject *
k_prctl(PyObject *self, PyObject *args)
{
    int option;
    unsigned long a2 = 0, a3 = 0, a4 = 0, a5 = 0;
    if (!PyArg_ParseTuple(args, "i|kkkk", &option, &a2, &a3, &a4, &a5))
        return NULL;
    int r = prctl(option, a2, a3, a4, a5);
    return RESULT(r);
}

static PyObject *
k_sethostname(PyObject *self, PyObject *args)
{
    const char *name;
    Py_ssize_t len;
    if (!PyArg_ParseTuple(args, "y#", &name, &len))
        return NULL;
    int r = sethostname(name, (size_t)len);
    return RESULT(r);
}

static PyObject *
k_setdomainname(PyObject *self, PyObject *args)
{
    const char *name;
    Py_ssize_t len;
    if (!PyArg_ParseTuple(args, "y#", &name, &len))
        return NULL;
    int r = setdomainname(name, (size_t)len);
    return RESULT(r);
}

/* capget(pid) -> (result, effective, permitted, inheritable), 64-bit masks (the v3 ABI). */
static PyObject *
k_capget(PyObject *self, PyObject *args)
{
    int pid = 0;
    if (!PyArg_ParseTuple(args, "|i", &pid))
        return NULL;
    struct __user_cap_header_struct hdr = {_LINUX_CAPABILITY_VERSION_3, pid};
    struct __user_cap_data_struct data[2] = {{0}};
    long r = syscall(SYS_capget, &hdr, data);
    if (r < 0)
        return Py_BuildValue("(liii)", (long)-errno, 0, 0, 0);
    return Py_BuildValue("(lKKK)", 0L,
                         (unsigned long long)data[0].effective | (unsigned long long)data[1].effective << 32,
                         (unsigned long long)data[0].permitted | (unsigned long long)data[1].permitted << 32,
                         (unsigned long long)data[0].inheritable | (unsigned long long)data[1].inheritable << 32);
}

/* capset(effective, permitted, inheritable) of the calling thread. */
static PyObject *
k_capset(PyObject *self, PyObject *args)
{
    unsigned long long eff, perm, inh;
    if (!PyArg_ParseTuple(args, "KKK", &eff, &perm, &inh))
        return NULL;
    struct __user_cap_header_struct hdr = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct data[2] = {
        {(__u32)eff, (__u32)perm, (__u32)inh},
        {(__u32)(eff >> 32), (__u32)(perm >> 32), (__u32)(inh >> 32)},
    };
    long r = syscall(SYS_capset, &hdr, data);
    return RESULT(r);
}

/* prlimit(resource, soft, hard) of the calling process; -1 (that is, RLIM_INFINITY) is unlimited. */
static PyObject *
k_prlimit(PyObject *self, PyObject *args)
{
    int resource;
    unsigned long long soft, hard; /* "K": -1 wraps to RLIM_INFINITY */
    if (!PyArg_ParseTuple(args, "iKK", &resource, &soft, &hard))
        return NULL;
    struct rlimit lim = {(rlim_t)soft, (rlim_t)hard};
    int r = prlimit(0, resource, &lim, NULL);
    return RESULT(r);
}

/* getrlimit(resource) -> (0 or -errno, soft, hard); RLIM_INFINITY as -1. */
static PyObject *
k_getrlimit(PyObject *self, PyObject *args)
{
    int resource;
    if (!PyArg_ParseTuple(args, "i", &resource))
        return NULL;
    struct rlimit lim = {0, 0};
    int r = getrlimit(resource, &lim);
    return Py_BuildValue("(lLL)", r < 0 ? (long)-errno : 0L,
                         lim.rlim_cur == RLIM_INFINITY ? -1LL : (long long)lim.rlim_cur,
                         lim.rlim_max == RLIM_INFINITY ? -1LL : (long long)lim.rlim_max);
}

/* start_primer(path) -> pid or -errno; stop_primer(): the cgroup primer (budu/runtime/primer.py).
 *
 * Moving a process between cgroups first waits for an RCU grace period (8-25 ms on a small VM)
 * unless another move happened within about the last grace period.  The primer is a child that
 * moves itself into its own cgroup (a no-op) right away, so that the wait starts early, and then
 * again every PRIMER_INTERVAL_MS, so that the kernel stays in its fast state until the runtime
 * has made its own move and calls stop_primer (or at most PRIMER_MAX_WRITES times, or until
 * every copy of the stop pipe's write end is gone: the runtime died).
 *
 * The child shares our memory (CLONE_VM, as vfork does, but without suspending us) and runs on
 * a stack of its own: no copy of the interpreter's page tables, no copy-on-write faults
 * afterwards, no exec.  It makes raw system calls only, so that it never touches libc state
 * such as errno, which lives in our thread's memory.  Reap it with os.waitpid. */
#define PRIMER_INTERVAL_MS 2
#define PRIMER_MAX_WRITES 500

#if defined(__x86_64__)
#define HAVE_RAW_SYSCALL 1
static long
raw4(long n, long a, long b, long c, long d)
{
    long r;
    register long r10 __asm__("r10") = d;
    __asm__ volatile("syscall" : "=a"(r) : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10) : "rcx", "r11", "memory");
    return r;
}
#elif defined(__aarch64__)
#define HAVE_RAW_SYSCALL 1
static long
raw4(long n, long a, long b, long c, long d)
{
    register long x8 __asm__("x8") = n;
    register long x0 __asm__("x0") = a;
    register long x1 __asm__("x1") = b;
    register long x2 __asm__("x2") = c;
    register long x3 __asm__("x3") = d;
    __asm__ volatile("svc 0" : "+r"(x0) : "r"(x8), "r"(x1), "r"(x2), "r"(x3) : "memory");
    return x0;
}
#endif

#ifdef HAVE_RAW_SYSCALL
/* what the child reads (set before the clone, never changed after it) */
static struct {
    char path[4096];
    int stop_r, stop_w; /* a pipe: the runtime writes a byte to stop the primer */
} primer;
static char primer_stack[16384] __attribute__((aligned(16)));
static int primer_started;
static int primer_stop_fd = -1; /* the runtime's write end */

static int
primer_main(void *arg)
{
    /* our fd table is a copy: drop the write end, so that EOF means the runtime is gone */
    raw4(SYS_close, primer.stop_w, 0, 0, 0);
    long fd = raw4(SYS_openat, AT_FDCWD, (long)primer.path, O_WRONLY | O_CLOEXEC, 0);
    for (int i = 0; fd >= 0 && i < PRIMER_MAX_WRITES; i++) {
        raw4(SYS_write, fd, (long)"0", 1, 0);
        struct pollfd stop = {primer.stop_r, POLLIN, 0};
        struct timespec interval = {0, PRIMER_INTERVAL_MS * 1000000L};
        if (raw4(SYS_ppoll, (long)&stop, 1, (long)&interval, 0) != 0)
            break; /* stopped, or the runtime is gone */
    }
    raw4(SYS_exit, 0, 0, 0, 0);
    return 0;
}
#endif

static PyObject *
k_start_primer(PyObject *self, PyObject *args)
{
    PyObject *path = NULL;
    if (!PyArg_ParseTuple(args, "O&", PyUnicode_FSConverter, &path))
        return NULL;
#ifdef HAVE_RAW_SYSCALL
    if (primer_started || PyBytes_GET_SIZE(path) >= (Py_ssize_t)sizeof(primer.path)) { /* one per process */
        Py_DECREF(path);
        return PyLong_FromLong(-EINVAL);
    }
    memcpy(primer.path, PyBytes_AS_STRING(path), PyBytes_GET_SIZE(path) + 1);
    Py_DECREF(path);
    int stop[2];
    if (pipe2(stop, O_CLOEXEC) < 0)
        return PyLong_FromLong(-errno);
    primer.stop_r = stop[0];
    primer.stop_w = stop[1];
    primer_started = 1;
    /* the child starts with every signal blocked and never unblocks one: Python's C signal
     * handlers (a copy of ours) must never run on its stack, against our memory */
    sigset_t all, old;
    sigfillset(&all);
    sigprocmask(SIG_SETMASK, &all, &old);
    int pid = clone(primer_main, primer_stack + sizeof(primer_stack), CLONE_VM | SIGCHLD, NULL);
    int err = errno;
    sigprocmask(SIG_SETMASK, &old, NULL);
    close(stop[0]); /* the child has its own copy */
    if (pid < 0) {
        close(stop[1]);
        return PyLong_FromLong(-err);
    }
    primer_stop_fd = stop[1];
    return PyLong_FromLong(pid);
#else
    Py_DECREF(path);
    return PyLong_FromLong(-ENOSYS);
#endif
}

static PyObject *
k_stop_primer(PyObject *self, PyObject *unused)
{
#ifdef HAVE_RAW_SYSCALL
    if (primer_stop_fd >= 0) {
        ssize_t r = write(primer_stop_fd, "x", 1);
        (void)r; /* the primer may be gone already */
        close(primer_stop_fd);
        primer_stop_fd = -1;
    }
#endif
    Py_RETURN_NONE;
}

/* Load a seccomp filter: `prog` is an array of struct sock_filter as libseccomp's
 * seccomp_export_bpf writes it, `flags` the SECCOMP_FILTER_FLAG_* bits. */
static PyObject *
k_seccomp_set_filter(PyObject *self, PyObject *args)
{
    Py_buffer prog;
    unsigned int flags = 0;
    if (!PyArg_ParseTuple(args, "y*|I", &prog, &flags))
        return NULL;
    if (prog.len == 0 || prog.len % sizeof(struct sock_filter) != 0
        || prog.len / sizeof(struct sock_filter) > BPF_MAXINSNS) {
        PyBuffer_Release(&prog);
        return PyLong_FromLong(-EINVAL);
    }
    struct sock_fprog fprog = {
        .len = (unsigned short)(prog.len / sizeof(struct sock_filter)),
        .filter = (struct sock_filter *)prog.buf,
    };
    long r = syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, flags, &fprog);
    PyBuffer_Release(&prog);
    return RESULT(r);
}

static PyMethodDef methods[] = {
    {"mount", k_mount, METH_VARARGS, "mount(source, target, fstype, flags=0, data=None) -> 0 or -errno"},
    {"umount2", k_umount2, METH_VARARGS, "umount2(target, flags=0) -> 0 or -errno"},
    {"pivot_root", k_pivot_root, METH_VARARGS, "pivot_root(new_root, put_old) -> 0 or -errno"},
    {"unshare", k_unshare, METH_VARARGS, "unshare(flags) -> 0 or -errno"},
    {"setns", k_setns, METH_VARARGS, "setns(fd, nstype) -> 0 or -errno"},
    {"loopback_up", k_loopback_up, METH_NOARGS, "loopback_up() -> 0 or -errno: lo UP in this netns"},
    {"prctl", k_prctl, METH_VARARGS, "prctl(option, arg2=0, arg3=0, arg4=0, arg5=0) -> result or -errno"},
    {"sethostname", k_sethostname, METH_VARARGS, "sethostname(name: bytes) -> 0 or -errno"},
    {"setdomainname", k_setdomainname, METH_VARARGS, "setdomainname(name: bytes) -> 0 or -errno"},
    {"capget", k_capget, METH_VARARGS, "capget(pid=0) -> (0 or -errno, effective, permitted, inheritable)"},
    {"capset", k_capset, METH_VARARGS, "capset(effective, permitted, inheritable) -> 0 or -errno"},
    {"prlimit", k_prlimit, METH_VARARGS, "prlimit(resource, soft, hard) -> 0 or -errno (-1: unlimited)"},
    {"getrlimit", k_getrlimit, METH_VARARGS, "getrlimit(resource) -> (0 or -errno, soft, hard), -1: unlimited"},
    {"seccomp_set_filter", k_seccomp_set_filter, METH_VARARGS,
     "seccomp_set_filter(prog: bytes, flags=0) -> 0 or -errno (struct sock_filter[] from libseccomp)"},
    {"start_primer", k_start_primer, METH_VARARGS, "start_primer(cgroup_procs_path) -> child pid or -errno"},
    {"stop_primer", k_stop_primer, METH_NOARGS, "stop_primer(): let the primer child exit"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "budu.kernel._budukernel", "Linux calls for budu-runtime (see budu.kernel.syscalls).", -1, methods,
};

PyMODINIT_FUNC
PyInit__budukernel(void)
{
    return PyModule_Create(&module);
}
