/*
 * budu-monitor: the per-container supervisor (budu's conmon).
 *
 * One monitor per running container.  It daemonizes, becomes a child subreaper, runs
 * `RUNTIME create`, holds the container's stdio (pipes, or the pty master it receives over a
 * console socket), writes the json-file log, serves attach clients, waits for the container,
 * writes DIR/status, applies the restart policy, runs health checks and, at the very end,
 * unmounts DIR/rootfs and runs the exit command.  No daemon and no CLI need to stay alive.
 *
 * Single-threaded: one poll() loop; signals arrive through a signalfd.  Every runtime call other
 * than a health check is short and synchronous (run_runtime), and reaps children the same way the
 * main loop does, so nothing is lost while it waits.
 *
 * Flags and both protocols (sync and attach): README.md next to this file.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#define LINE_CAP (16 * 1024)          /* docker's json-file splits lines longer than this */
#define CLIENT_OUT_CAP (1024 * 1024)  /* a client further behind than this is dropped */
#define STDIN_CAP (1024 * 1024)       /* stop reading clients while this much stdin is queued */
#define MAX_CLIENTS 64
#define HEALTH_OUT_CAP 4096           /* docker keeps at most 4 KiB of a probe's output */
#define HEALTH_LOG_MAX 5              /* ... and the last 5 probes */
#define DRAIN_MS 200                  /* after the container exits, wait this long for output EOF */
#define CLEANUP_WAIT_MS 60000         /* how long a cleanup client may keep us at the end */
#define RUNTIME_TIMEOUT_MS 120000     /* a runtime call that hangs longer is killed */

/* attach frames: client -> monitor */
#define F_STDIN 0x00
#define F_STDIN_EOF 0x01
#define F_RESIZE 0x02
#define F_HELLO 0x10
/* attach frames: monitor -> client */
#define F_STDOUT 0x01
#define F_STDERR 0x02
#define F_EXIT 0x03
/* HELLO flags */
#define H_STDOUT 0x01
#define H_STDERR 0x02
#define H_STDIN 0x04
#define H_CLEANUP 0x08

enum restart_policy { R_NO, R_ALWAYS, R_UNLESS_STOPPED, R_ON_FAILURE };
enum phase { P_CREATED, P_RUNNING, P_DRAINING, P_RESTARTING, P_CLEANUP_WAIT };
enum health_status { HS_STARTING, HS_HEALTHY, HS_UNHEALTHY };

/* ------------------------------------------------------------------------------------------ */
/* Small helpers: growable buffers, time, JSON.                                                */

struct buf {
  char *p;
  size_t len, off, cap; /* bytes [off, len) are pending */
};

static void
buf_reserve (struct buf *b, size_t more)
{
  if (b->len + more <= b->cap)
    return;
  if (b->off > 0)
    {
      memmove (b->p, b->p + b->off, b->len - b->off);
      b->len -= b->off;
      b->off = 0;
      if (b->len + more <= b->cap)
        return;
    }
  size_t cap = b->cap ? b->cap : 256;
  while (cap < b->len + more)
    cap *= 2;
  char *p = realloc (b->p, cap);
  if (p == NULL)
    {
      /* Out of memory in a 1 MiB program: nothing sensible to do but stop. */
      _exit (1);
    }
  b->p = p;
  b->cap = cap;
}

static void
buf_add (struct buf *b, const void *data, size_t n)
{
  buf_reserve (b, n);
  memcpy (b->p + b->len, data, n);
  b->len += n;
}

static void
buf_str (struct buf *b, const char *s)
{
  buf_add (b, s, strlen (s));
}

static void __attribute__ ((format (printf, 2, 3)))
buf_printf (struct buf *b, const char *fmt, ...)
{
  char tmp[256];
  va_list ap;
  va_start (ap, fmt);
  int n = vsnprintf (tmp, sizeof tmp, fmt, ap);
  va_end (ap);
  if (n > 0)
    buf_add (b, tmp, (size_t) n < sizeof tmp ? (size_t) n : sizeof tmp - 1);
}

static size_t
buf_pending (const struct buf *b)
{
  return b->len - b->off;
}

/* Consumed everything: reset, and give a big buffer back so a burst does not pin memory. */
static void
buf_consumed (struct buf *b, size_t n)
{
  b->off += n;
  if (b->off == b->len)
    {
      b->off = b->len = 0;
      if (b->cap > 64 * 1024)
        {
          free (b->p);
          b->p = NULL;
          b->cap = 0;
        }
    }
}

static void
buf_free (struct buf *b)
{
  free (b->p);
  memset (b, 0, sizeof *b);
}

static int64_t
mono_ms (void)
{
  struct timespec ts;
  clock_gettime (CLOCK_MONOTONIC, &ts);
  return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static struct timespec
now_real (void)
{
  struct timespec ts;
  clock_gettime (CLOCK_REALTIME, &ts);
  return ts;
}

/* Go's time.RFC3339Nano in UTC, what docker writes everywhere: trailing zeros of the fraction are
   dropped ("...:05.12Z"), no fraction at all when it is zero; an unset time is year 1. */
static void
fmt_time (char out[40], struct timespec ts)
{
  if (ts.tv_sec == 0 && ts.tv_nsec == 0)
    {
      strcpy (out, "0001-01-01T00:00:00Z");
      return;
    }
  struct tm tm;
  time_t t = ts.tv_sec;
  gmtime_r (&t, &tm);
  size_t n = strftime (out, 40, "%Y-%m-%dT%H:%M:%S", &tm);
  if (ts.tv_nsec)
    {
      char frac[16];
      snprintf (frac, sizeof frac, ".%09ld", ts.tv_nsec);
      size_t f = strlen (frac);
      while (f > 1 && frac[f - 1] == '0')
        frac[--f] = '\0';
      memcpy (out + n, frac, f);
      n += f;
    }
  out[n++] = 'Z';
  out[n] = '\0';
}

/* Length of the valid UTF-8 sequence at s (Go's utf8.DecodeRune rules: no overlongs, no
   surrogates, nothing past U+10FFFF), 0 if invalid. */
static size_t
utf8_len (const unsigned char *s, size_t n)
{
  unsigned char c = s[0];
  unsigned char lo = 0x80, hi = 0xBF;
  size_t len;
  if (c < 0x80)
    return 1;
  if (c >= 0xC2 && c <= 0xDF)
    len = 2;
  else if (c >= 0xE0 && c <= 0xEF)
    {
      len = 3;
      if (c == 0xE0)
        lo = 0xA0;
      else if (c == 0xED)
        hi = 0x9F;
    }
  else if (c >= 0xF0 && c <= 0xF4)
    {
      len = 4;
      if (c == 0xF0)
        lo = 0x90;
      else if (c == 0xF4)
        hi = 0x8F;
    }
  else
    return 0;
  if (n < len || s[1] < lo || s[1] > hi)
    return 0;
  for (size_t i = 2; i < len; i++)
    if ((s[i] & 0xC0) != 0x80)
      return 0;
  return len;
}

/* A JSON string, escaped byte for byte like docker's json-file writer (jsonlog's
   ffjsonWriteJSONBytesAsString): \" \\ \n \r, other controls and < > & as \u00XX, U+2028/9
   escaped, and each byte of invalid UTF-8 as \ufffd. */
static size_t
json_escape (char *out, const char *in, size_t n)
{
  static const char hex[] = "0123456789abcdef";
  const unsigned char *s = (const unsigned char *) in;
  char *o = out;
  *o++ = '"';
  for (size_t i = 0; i < n;)
    {
      unsigned char c = s[i];
      if (c < 0x80)
        {
          if (c >= 0x20 && c != '\\' && c != '"' && c != '<' && c != '>' && c != '&')
            *o++ = (char) c;
          else if (c == '\\' || c == '"')
            {
              *o++ = '\\';
              *o++ = (char) c;
            }
          else if (c == '\n')
            {
              *o++ = '\\';
              *o++ = 'n';
            }
          else if (c == '\r')
            {
              *o++ = '\\';
              *o++ = 'r';
            }
          else
            {
              memcpy (o, "\\u00", 4);
              o += 4;
              *o++ = hex[c >> 4];
              *o++ = hex[c & 0xF];
            }
          i++;
          continue;
        }
      size_t l = utf8_len (s + i, n - i);
      if (l == 0)
        {
          memcpy (o, "\\ufffd", 6);
          o += 6;
          i++;
        }
      else if (l == 3 && c == 0xE2 && s[i + 1] == 0x80 && (s[i + 2] == 0xA8 || s[i + 2] == 0xA9))
        {
          memcpy (o, "\\u202", 5);
          o += 5;
          *o++ = s[i + 2] == 0xA8 ? '8' : '9';
          i += 3;
        }
      else
        {
          memcpy (o, s + i, l);
          o += l;
          i += l;
        }
    }
  *o++ = '"';
  return (size_t) (o - out);
}

/* Worst case of json_escape: 6 output bytes per input byte, plus the quotes. */
#define JSON_MAX(n) ((n) *6 + 2)

static void
buf_json (struct buf *b, const char *s, size_t n)
{
  buf_reserve (b, JSON_MAX (n));
  b->len += json_escape (b->p + b->len, s, n);
}

static void
buf_jstr (struct buf *b, const char *s)
{
  buf_json (b, s ? s : "", s ? strlen (s) : 0);
}

/* Blocking write of all of it; EINTR retried.  0 or -1 with errno. */
static int
write_all (int fd, const void *data, size_t n)
{
  const char *p = data;
  while (n > 0)
    {
      ssize_t w = write (fd, p, n);
      if (w < 0)
        {
          if (errno == EINTR)
            continue;
          if (errno == EAGAIN)
            {
              struct pollfd pfd = { .fd = fd, .events = POLLOUT };
              poll (&pfd, 1, 1000);
              continue;
            }
          return -1;
        }
      p += w;
      n -= (size_t) w;
    }
  return 0;
}

static void
set_nonblock (int fd)
{
  int fl = fcntl (fd, F_GETFL);
  if (fl >= 0)
    fcntl (fd, F_SETFL, fl | O_NONBLOCK);
}

static void
close_fd (int *fd)
{
  if (*fd >= 0)
    close (*fd);
  *fd = -1;
}

/* Read a small file into buf (NUL-terminated); bytes read or -1. */
static ssize_t
read_small (const char *path, char *buf, size_t cap)
{
  int fd = open (path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return -1;
  size_t n = 0;
  while (n + 1 < cap)
    {
      ssize_t r = read (fd, buf + n, cap - 1 - n);
      if (r < 0 && errno == EINTR)
        continue;
      if (r <= 0)
        break;
      n += (size_t) r;
    }
  close (fd);
  buf[n] = '\0';
  return (ssize_t) n;
}

/* ------------------------------------------------------------------------------------------ */
/* Options.                                                                                    */

static struct
{
  const char *id, *bundle, *runtime, *name, *image;
  const char **runtime_args;
  int n_runtime_args;
  int sync_fd;
  bool log_none;
  const char *log_path;
  long long log_max_size;
  long log_max_file;
  bool terminal, stdin_open, stdin_once;
  enum restart_policy restart;
  long max_retries, restart_count;
  const char *events_file;
  const char *exit_command;
  const char **exit_args;
  int n_exit_args;
  const char **health_args;
  int n_health_args;
  long health_interval, health_timeout, health_retries, health_start_period;
} opt = {
  .sync_fd = -1,
  .log_max_file = 1,
  .health_interval = 30000,
  .health_timeout = 30000,
  .health_retries = 3,
};

static char dir[PATH_MAX]; /* the bundle, absolute: our cwd */

static const char USAGE[] =
    "usage: budu-monitor --id ID --bundle DIR --runtime PATH [--runtime-arg ARG]... --sync-fd N\n"
    "  [--name NAME] [--image IMAGE]\n"
    "  [--log-driver json-file|none] [--log-path FILE] [--log-max-size BYTES] [--log-max-file N]\n"
    "  [--terminal] [--stdin] [--stdin-once]\n"
    "  [--restart no|always|unless-stopped|on-failure[:N]] [--max-retries N] [--restart-count N]\n"
    "  [--events-file FILE] [--exit-command PATH [--exit-command-arg ARG]...]\n"
    "  [--health-arg ARG]... [--health-interval MS] [--health-timeout MS] [--health-retries N]\n"
    "  [--health-start-period MS]\n"
    "See src/budu/monitor/README.md.\n";

/* A bad command line: one line on stderr, {"error"} on the sync fd if there is one, exit 125. */
static void __attribute__ ((noreturn, format (printf, 1, 2)))
usage_error (const char *fmt, ...)
{
  char msg[512];
  va_list ap;
  va_start (ap, fmt);
  vsnprintf (msg, sizeof msg, fmt, ap);
  va_end (ap);
  fprintf (stderr, "budu-monitor: %s\n", msg);
  if (opt.sync_fd >= 0 && fcntl (opt.sync_fd, F_GETFD) >= 0)
    {
      struct buf b = { 0 };
      buf_str (&b, "{\"error\": ");
      buf_jstr (&b, msg);
      buf_str (&b, "}\n");
      (void) write_all (opt.sync_fd, b.p, b.len);
    }
  exit (125);
}

static long long
parse_num (const char *flag, const char *v, long long min)
{
  char *end;
  errno = 0;
  long long n = strtoll (v, &end, 10);
  if (errno || end == v || *end || n < min)
    usage_error ("%s %s: must be a number >= %lld", flag, v, min);
  return n;
}

/* Make a path absolute against the directory we started in (we chdir to DIR later). */
static const char *
abs_path (const char *p)
{
  if (p == NULL || p[0] == '/')
    return p;
  char cwd[PATH_MAX];
  if (getcwd (cwd, sizeof cwd) == NULL)
    return p;
  char *r;
  if (asprintf (&r, "%s/%s", cwd, p) < 0)
    return p;
  return r;
}

static void
parse_args (int argc, char **argv)
{
  /* The sync fd first, so that any later error can be reported on it too. */
  for (int i = 1; i < argc; i++)
    {
      const char *v = NULL;
      if (strcmp (argv[i], "--sync-fd") == 0 && i + 1 < argc)
        v = argv[i + 1];
      else if (strncmp (argv[i], "--sync-fd=", 10) == 0)
        v = argv[i] + 10;
      char *end;
      long n = v ? strtol (v, &end, 10) : -1;
      if (v && *v && !*end && n >= 0 && n < INT_MAX)
        opt.sync_fd = (int) n;
    }

  opt.runtime_args = calloc ((size_t) argc, sizeof (char *));
  opt.exit_args = calloc ((size_t) argc, sizeof (char *));
  opt.health_args = calloc ((size_t) argc, sizeof (char *));
  if (!opt.runtime_args || !opt.exit_args || !opt.health_args)
    usage_error ("out of memory");
  bool have_sync = false;
  const char *log_driver = "json-file";

  for (int i = 1; i < argc; i++)
    {
      const char *a = argv[i];
      if (strcmp (a, "--help") == 0 || strcmp (a, "-h") == 0)
        {
          fputs (USAGE, stdout);
          exit (0);
        }
      if (strncmp (a, "--", 2) != 0)
        usage_error ("unexpected argument %s (see --help)", a);

      /* boolean flags */
      if (strcmp (a, "--terminal") == 0)
        {
          opt.terminal = true;
          continue;
        }
      if (strcmp (a, "--stdin") == 0)
        {
          opt.stdin_open = true;
          continue;
        }
      if (strcmp (a, "--stdin-once") == 0)
        {
          opt.stdin_once = true;
          continue;
        }

      /* flags with a value: --flag VALUE or --flag=VALUE */
      char name[64];
      const char *v;
      const char *eq = strchr (a, '=');
      if (eq)
        {
          size_t l = (size_t) (eq - a) < sizeof name - 1 ? (size_t) (eq - a) : sizeof name - 1;
          memcpy (name, a, l);
          name[l] = '\0';
          v = eq + 1;
        }
      else
        {
          snprintf (name, sizeof name, "%s", a);
          if (i + 1 >= argc)
            usage_error ("%s needs a value", a);
          v = argv[++i];
        }

      if (strcmp (name, "--id") == 0)
        opt.id = v;
      else if (strcmp (name, "--bundle") == 0)
        opt.bundle = v;
      else if (strcmp (name, "--runtime") == 0)
        opt.runtime = v;
      else if (strcmp (name, "--runtime-arg") == 0)
        opt.runtime_args[opt.n_runtime_args++] = v;
      else if (strcmp (name, "--sync-fd") == 0)
        {
          opt.sync_fd = (int) parse_num (name, v, 0);
          have_sync = true;
        }
      else if (strcmp (name, "--name") == 0)
        opt.name = v;
      else if (strcmp (name, "--image") == 0)
        opt.image = v;
      else if (strcmp (name, "--log-driver") == 0)
        log_driver = v;
      else if (strcmp (name, "--log-path") == 0)
        opt.log_path = v;
      else if (strcmp (name, "--log-max-size") == 0)
        opt.log_max_size = parse_num (name, v, 0);
      else if (strcmp (name, "--log-max-file") == 0)
        opt.log_max_file = (long) parse_num (name, v, 1);
      else if (strcmp (name, "--restart") == 0)
        {
          if (strcmp (v, "no") == 0 || *v == '\0')
            opt.restart = R_NO;
          else if (strcmp (v, "always") == 0)
            opt.restart = R_ALWAYS;
          else if (strcmp (v, "unless-stopped") == 0)
            opt.restart = R_UNLESS_STOPPED;
          else if (strcmp (v, "on-failure") == 0)
            opt.restart = R_ON_FAILURE;
          else if (strncmp (v, "on-failure:", 11) == 0)
            {
              opt.restart = R_ON_FAILURE;
              opt.max_retries = (long) parse_num (name, v + 11, 0);
            }
          else
            usage_error ("--restart %s: must be no, always, unless-stopped or on-failure", v);
        }
      else if (strcmp (name, "--max-retries") == 0)
        opt.max_retries = (long) parse_num (name, v, 0);
      else if (strcmp (name, "--restart-count") == 0)
        opt.restart_count = (long) parse_num (name, v, 0);
      else if (strcmp (name, "--events-file") == 0)
        opt.events_file = v;
      else if (strcmp (name, "--exit-command") == 0)
        opt.exit_command = v;
      else if (strcmp (name, "--exit-command-arg") == 0)
        opt.exit_args[opt.n_exit_args++] = v;
      else if (strcmp (name, "--health-arg") == 0)
        opt.health_args[opt.n_health_args++] = v;
      else if (strcmp (name, "--health-interval") == 0)
        opt.health_interval = (long) parse_num (name, v, 1);
      else if (strcmp (name, "--health-timeout") == 0)
        opt.health_timeout = (long) parse_num (name, v, 1);
      else if (strcmp (name, "--health-retries") == 0)
        opt.health_retries = (long) parse_num (name, v, 1);
      else if (strcmp (name, "--health-start-period") == 0)
        opt.health_start_period = (long) parse_num (name, v, 0);
      else
        usage_error ("unknown flag %s (see --help)", name);
    }

  if (!opt.id || !*opt.id)
    usage_error ("--id is required");
  if (strchr (opt.id, '/'))
    usage_error ("--id %s: must not contain '/'", opt.id);
  if (!opt.bundle || !*opt.bundle)
    usage_error ("--bundle is required");
  if (!opt.runtime || !*opt.runtime)
    usage_error ("--runtime is required");
  if (!have_sync)
    usage_error ("--sync-fd is required");
  if (fcntl (opt.sync_fd, F_GETFD) < 0)
    usage_error ("--sync-fd %d: not an open file descriptor", opt.sync_fd);
  if (strcmp (log_driver, "none") == 0)
    opt.log_none = true;
  else if (strcmp (log_driver, "json-file") != 0)
    usage_error ("--log-driver %s: must be json-file or none", log_driver);
  if (opt.exit_command == NULL && opt.n_exit_args)
    usage_error ("--exit-command-arg needs --exit-command");
  if (!opt.stdin_open)
    opt.stdin_once = false; /* docker's StdinOnce without OpenStdin means nothing */

  if (realpath (opt.bundle, dir) == NULL)
    usage_error ("--bundle %s: %s", opt.bundle, strerror (errno));
  /* Everything we open later is relative to DIR (our cwd) unless given absolute. */
  if (strchr (opt.runtime, '/'))
    opt.runtime = abs_path (opt.runtime);
  opt.log_path = abs_path (opt.log_path);
  opt.events_file = abs_path (opt.events_file);
  opt.exit_command = abs_path (opt.exit_command);
}

/* ------------------------------------------------------------------------------------------ */
/* State.                                                                                      */

struct client
{
  int fd;
  int flags;  /* HELLO flags; -1 until the HELLO frame came */
  bool closing;  /* close once `out` is flushed (after EXIT) */
  bool dead_out; /* writing to it failed: no more output, but read its input to the end */
  unsigned char hdr[5];
  size_t hdr_len;
  uint32_t need;      /* payload bytes still to come for the current frame */
  unsigned char small[4]; /* payload of HELLO / RESIZE */
  size_t small_len;
  struct buf out;
};

static struct
{
  enum phase phase;
  int sigfd, listen_fd;
  int in_fd;     /* container stdin: pipe write end, or a dup of the pty master; -1 */
  int out_fd[2]; /* container stdout and stderr read ends (pty: [0] is the master) */
  int master;    /* pty master (resize), or -1 */
  struct buf in; /* stdin queued for the container */
  bool stdin_close_pending;

  char part[2][LINE_CAP]; /* partial line of each stream, waiting for its '\n' */
  size_t part_len[2];
  int log_fd;
  long long log_size;
  char log_path[PATH_MAX + 512];

  pid_t pid; /* the container's init */
  bool exited;
  int wstatus;
  int exit_code;
  bool oom_killed;
  long long oom_base;
  char cg_memory[PATH_MAX]; /* cgroup v1 memory path of the container */
  char cg_unified[PATH_MAX]; /* cgroup v2 path */
  struct timespec started_at, finished_at;
  int64_t started_mono, drain_deadline, restart_at, backoff_ms;
  int64_t cleanup_deadline, flush_deadline; /* at the end: cleanup clients, unflushed EXIT frames */
  bool had_cleanup_client;
  long restart_count;
  char error[1024];

  struct client *clients[MAX_CLIENTS];
  int n_clients;

  /* orphans reaped before we knew the container's pid (see reap) */
  pid_t early_pid[16];
  int early_status[16];
  int n_early;

  /* the runtime call in progress (run_runtime) */
  pid_t call_pid;
  bool call_done;
  int call_status;
} M = { .sigfd = -1, .listen_fd = -1, .in_fd = -1, .out_fd = { -1, -1 }, .master = -1, .log_fd = -1 };

static struct
{
  enum health_status status;
  int streak;
  struct
  {
    struct timespec start, end;
    int code;
    size_t len;
    char out[HEALTH_OUT_CAP];
  } log[HEALTH_LOG_MAX];
  int n_log;
  pid_t pid; /* probe in flight */
  bool done;
  int wstatus;
  int fd;
  bool timed_out;
  struct timespec start;
  int64_t deadline, next_at;
  size_t len;
  char out[HEALTH_OUT_CAP];
} H = { .fd = -1 };


/* ------------------------------------------------------------------------------------------ */
/* Children: spawning, reaping.                                                                */

/* Reap every child (we are a subreaper: runtime helpers and orphans end up here too) and note
   the ones we wait for.  Only bookkeeping; the main loop acts on the flags. */
static void
reap (void)
{
  for (;;)
    {
      int st;
      pid_t p = waitpid (-1, &st, WNOHANG);
      if (p <= 0)
        return;
      if (M.pid > 0 && p == M.pid)
        {
          M.exited = true;
          M.wstatus = st;
        }
      else if (M.call_pid > 0 && p == M.call_pid)
        {
          M.call_done = true;
          M.call_status = st;
        }
      else if (H.pid > 0 && p == H.pid)
        {
          H.done = true;
          H.wstatus = st;
        }
      else if (M.pid == 0)
        {
          /* Maybe the container's init, dead before we read the pid file: remember it. */
          M.early_pid[M.n_early % 16] = p;
          M.early_status[M.n_early % 16] = st;
          M.n_early++;
        }
    }
}

static void
handle_signals (void)
{
  struct signalfd_siginfo si;
  /* SIGTERM, SIGINT, SIGHUP are read and ignored on purpose: the engine stops containers
     through the runtime, and the monitor must outlive whoever started it. */
  while (read (M.sigfd, &si, sizeof si) == sizeof si)
    ;
  reap (); /* whatever was read: SIGCHLDs coalesce */
}

/* Default dispositions and an empty mask for what we exec: the runtime passes ignored signals on
   to the container (an engine in Python ignores SIGPIPE and SIGXFSZ, and so would `yes | head`). */
static void
reset_signals (void)
{
  sigset_t none;
  for (int s = 1; s < NSIG; s++)
    if (s != SIGKILL && s != SIGSTOP)
      signal (s, SIG_DFL);
  sigemptyset (&none);
  sigprocmask (SIG_SETMASK, &none, NULL);
}

/* fork + exec with the given stdio; the child gets default signal state back. */
static pid_t
spawn (const char *const *argv, int in, int out, int err, bool path_search)
{
  pid_t pid = fork ();
  if (pid != 0)
    return pid;
  int fds[3] = { in, out, err };
  for (int i = 0; i < 3; i++)
    {
      if (fds[i] == i)
        fcntl (i, F_SETFD, 0); /* dup2 onto itself keeps FD_CLOEXEC */
      else if (dup2 (fds[i], i) < 0)
        _exit (127);
    }
  reset_signals ();
  if (path_search)
    execvp (argv[0], (char *const *) argv);
  else
    execv (argv[0], (char *const *) argv);
  dprintf (2, "budu-monitor: exec %s: %s\n", argv[0], strerror (errno));
  _exit (127);
}

static int devnull = -1;

/* argv for RUNTIME [runtime-args] VERB-ARGS... (NULL-terminated); free() it. */
static const char **
runtime_argv (const char *const *verb_args)
{
  int n = 0;
  while (verb_args[n])
    n++;
  const char **v = calloc ((size_t) (1 + opt.n_runtime_args + n + 1), sizeof (char *));
  if (v == NULL)
    _exit (1);
  int k = 0;
  v[k++] = opt.runtime;
  for (int i = 0; i < opt.n_runtime_args; i++)
    v[k++] = opt.runtime_args[i];
  for (int i = 0; i < n; i++)
    v[k++] = verb_args[i];
  v[k] = NULL;
  return v;
}

/* Turn what a runtime printed on failure into one message: the "msg" of a JSON log line
   ({"level":"error","msg":"..."}) or of a logrus text line (level=error msg="..."), else the
   last non-empty line as it is.  Error-level lines win over others. */
static void
runtime_message (const char *text, char *out, size_t cap)
{
  char best[1024] = "", last[1024] = "";
  const char *line = text;
  while (*line)
    {
      const char *end = strchr (line, '\n');
      size_t len = end ? (size_t) (end - line) : strlen (line);
      char tmp[1024];
      size_t tl = 0;
      const char *m = NULL;
      const char *j = memmem (line, len, "\"msg\":\"", 7);
      const char *t = memmem (line, len, "msg=\"", 5);
      if (j)
        m = j + 7;
      else if (t)
        m = t + 5;
      if (m)
        {
          /* unquote up to the closing quote: enough of JSON/Go escaping for a message */
          for (const char *p = m; p < line + len && *p != '"' && tl < sizeof tmp - 8; p++)
            {
              if (*p == '\\' && p + 1 < line + len)
                {
                  p++;
                  char c = *p;
                  if (c == 'n')
                    c = ' ';
                  else if (c == 't')
                    c = ' ';
                  else if (c == 'u' && p + 4 < line + len)
                    {
                      unsigned u = 0;
                      sscanf (p + 1, "%4x", &u);
                      p += 4;
                      if (u < 0x80)
                        c = (char) u;
                      else
                        c = '?';
                    }
                  tmp[tl++] = c;
                }
              else
                tmp[tl++] = *p;
            }
        }
      else
        {
          tl = len < sizeof tmp - 1 ? len : sizeof tmp - 1;
          memcpy (tmp, line, tl);
        }
      tmp[tl] = '\0';
      while (tl > 0 && (tmp[tl - 1] == ' ' || tmp[tl - 1] == '\r'))
        tmp[--tl] = '\0';
      if (tl > 0)
        {
          snprintf (last, sizeof last, "%s", tmp);
          bool is_err = memmem (line, len, "level=error", 11) || memmem (line, len, "\"level\":\"error\"", 15)
                        || memmem (line, len, "level=fatal", 11) || memmem (line, len, "\"level\":\"fatal\"", 15);
          if (is_err)
            snprintf (best, sizeof best, "%s", tmp);
        }
      if (!end)
        break;
      line = end + 1;
    }
  snprintf (out, cap, "%s", best[0] ? best : last);
}

/* Receive the pty master a runtime sends over the console socket (SCM_RIGHTS). */
static int
recv_master (int listen_fd)
{
  int c = accept4 (listen_fd, NULL, NULL, SOCK_CLOEXEC);
  if (c < 0)
    return -1;
  struct timeval tv = { .tv_sec = 10 };
  setsockopt (c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  char data[256];
  union
  {
    char buf[CMSG_SPACE (sizeof (int) * 4)];
    struct cmsghdr align;
  } u;
  struct iovec iov = { .iov_base = data, .iov_len = sizeof data };
  struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof u.buf };
  int fd = -1;
  ssize_t r;
  do
    r = recvmsg (c, &msg, MSG_CMSG_CLOEXEC);
  while (r < 0 && errno == EINTR);
  if (r >= 0)
    for (struct cmsghdr *cm = CMSG_FIRSTHDR (&msg); cm; cm = CMSG_NXTHDR (&msg, cm))
      if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS)
        {
          int n = (int) ((cm->cmsg_len - CMSG_LEN (0)) / sizeof (int));
          int *fds = (int *) CMSG_DATA (cm);
          for (int i = 0; i < n; i++)
            {
              if (fd < 0)
                fd = fds[i];
              else
                close (fds[i]);
            }
        }
  close (c);
  return fd;
}

/*
 * Run RUNTIME [runtime-args] VERB-ARGS with the given stdio and wait for it, reading what it
 * prints from `capture` (a pipe read end its stderr goes to) into msg.  We do not wait for EOF
 * on `capture`: on create it is the container's own stderr, held open by the container.  With
 * console_fd, also accept the pty master it sends.  Returns its exit code (127 if it could not
 * run, 137 if it hung and was killed); msg gets the runtime's error message.
 */
static int
run_runtime (const char *const *verb_args, int in, int out, int err, int capture, int console_fd, int *master,
             char *msg, size_t msg_cap)
{
  char text[8192];
  size_t tl = 0;
  const char **argv = runtime_argv (verb_args);
  M.call_done = false;
  M.call_pid = spawn (argv, in, out, err, true);
  free (argv);
  if (M.call_pid < 0)
    {
      snprintf (msg, msg_cap, "cannot run %s: %s", opt.runtime, strerror (errno));
      M.call_pid = 0;
      return 127;
    }
  int64_t deadline = mono_ms () + RUNTIME_TIMEOUT_MS;
  bool killed = false;
  reap (); /* a SIGCHLD may be pending from before the call */
  while (!M.call_done)
    {
      struct pollfd p[3] = { { .fd = M.sigfd, .events = POLLIN },
                             { .fd = capture, .events = POLLIN },
                             { .fd = console_fd, .events = POLLIN } };
      int64_t left = deadline - mono_ms ();
      if (left <= 0 && !killed)
        {
          kill (M.call_pid, SIGKILL);
          killed = true;
          deadline = mono_ms () + 5000;
          continue;
        }
      if (left <= 0)
        break; /* unkillable: give up on it; reap() will collect it later */
      int r = poll (p, 3, (int) left);
      if (r < 0 && errno != EINTR)
        break;
      if (r <= 0)
        continue;
      if (p[0].revents)
        handle_signals ();
      if (p[1].revents)
        {
          ssize_t n = read (capture, text + tl, sizeof text - 1 - tl);
          if (n > 0)
            tl += (size_t) n;
          else if (n == 0 || (errno != EINTR && errno != EAGAIN))
            capture = -1; /* EOF: stop polling it */
          if (tl == sizeof text - 1)
            tl = 0; /* full: start over, the error is at the end */
        }
      if (p[2].revents && master)
        {
          int fd = recv_master (console_fd);
          if (fd >= 0)
            {
              if (*master >= 0)
                close (*master);
              *master = fd;
            }
        }
    }
  /* what it wrote just before exiting */
  if (capture >= 0)
    {
      ssize_t n;
      while (tl < sizeof text - 1 && (n = read (capture, text + tl, sizeof text - 1 - tl)) > 0)
        tl += (size_t) n;
    }
  text[tl] = '\0';
  int st = M.call_status;
  bool done = M.call_done;
  M.call_pid = 0;
  if (!done || killed)
    {
      snprintf (msg, msg_cap, "%s %s: timed out", opt.runtime, verb_args[0]);
      return 137;
    }
  int code = WIFEXITED (st) ? WEXITSTATUS (st) : 128 + WTERMSIG (st);
  if (code != 0)
    {
      runtime_message (text, msg, msg_cap);
      if (!msg[0])
        snprintf (msg, msg_cap, "%s %s failed with exit code %d", opt.runtime, verb_args[0], code);
    }
  return code;
}

/* A runtime call whose output only matters when it fails. */
static int
runtime_simple (const char *const *verb_args, char *msg, size_t cap)
{
  int p[2];
  if (pipe2 (p, O_CLOEXEC) < 0)
    return -1;
  set_nonblock (p[0]);
  int rc = run_runtime (verb_args, devnull, p[1], p[1], p[0], -1, NULL, msg, cap);
  close (p[0]);
  close (p[1]);
  return rc;
}

static void
runtime_delete (void)
{
  char msg[512];
  const char *args[] = { "delete", "--force", opt.id, NULL };
  runtime_simple (args, msg, sizeof msg);
}

/* ------------------------------------------------------------------------------------------ */
/* Files: status, events, log.                                                                 */

static const char *
health_name (enum health_status s)
{
  return s == HS_HEALTHY ? "healthy" : s == HS_UNHEALTHY ? "unhealthy" : "starting";
}

/* DIR/status, atomically: write status.tmp, rename.  No fsync: readers see the old or the new
   file, never a half-written one, and after a power cut a status that is behind the truth is
   what the engine recovers from anyway (its monitor is gone: exited 255).  An fsync per change
   cost up to hundreds of ms on a busy disk, at every start and exit. */
static void
write_status (void)
{
  static const char *names[] = { [P_CREATED] = "created", [P_RUNNING] = "running", [P_DRAINING] = "running",
                                 [P_RESTARTING] = "restarting", [P_CLEANUP_WAIT] = "exited" };
  char started[40], finished[40];
  fmt_time (started, M.started_at);
  fmt_time (finished, M.finished_at);
  struct buf b = { 0 };
  bool running = M.phase == P_RUNNING || M.phase == P_DRAINING;
  buf_printf (&b, "{\"monitor_pid\": %d, \"pid\": %d, \"status\": \"%s\", \"exit_code\": %d, \"oom_killed\": %s, ",
              (int) getpid (), running ? (int) M.pid : 0, names[M.phase], M.exit_code,
              M.oom_killed ? "true" : "false");
  buf_printf (&b, "\"started_at\": \"%s\", \"finished_at\": \"%s\", \"restart_count\": %ld, \"error\": ", started,
              finished, M.restart_count);
  buf_jstr (&b, M.error);
  if (opt.n_health_args)
    {
      buf_printf (&b, ", \"health\": {\"Status\": \"%s\", \"FailingStreak\": %d, \"Log\": [", health_name (H.status),
                  H.streak);
      for (int i = 0; i < H.n_log; i++)
        {
          char s[40], e[40];
          fmt_time (s, H.log[i].start);
          fmt_time (e, H.log[i].end);
          buf_printf (&b, "%s{\"Start\": \"%s\", \"End\": \"%s\", \"ExitCode\": %d, \"Output\": ", i ? ", " : "", s, e,
                      H.log[i].code);
          buf_json (&b, H.log[i].out, H.log[i].len);
          buf_str (&b, "}");
        }
      buf_str (&b, "]}");
    }
  buf_str (&b, "}\n");

  int fd = open ("status.tmp", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd >= 0)
    {
      int r = write_all (fd, b.p, b.len);
      close (fd);
      if (r == 0)
        rename ("status.tmp", "status");
      else
        unlink ("status.tmp");
    }
  buf_free (&b);
}

/* One docker-style event line, appended with a single write (O_APPEND keeps lines whole). */
static void
write_event (const char *action, int exit_code)
{
  if (!opt.events_file)
    return;
  struct timespec ts = now_real ();
  struct buf b = { 0 };
  buf_str (&b, "{\"status\":");
  buf_jstr (&b, action);
  buf_str (&b, ",\"id\":");
  buf_jstr (&b, opt.id);
  buf_str (&b, ",\"from\":");
  buf_jstr (&b, opt.image);
  buf_str (&b, ",\"Type\":\"container\",\"Action\":");
  buf_jstr (&b, action);
  buf_str (&b, ",\"Actor\":{\"ID\":");
  buf_jstr (&b, opt.id);
  buf_str (&b, ",\"Attributes\":{");
  /* keys sorted, as Go marshals a map */
  const char *sep = "";
  if (exit_code >= 0)
    {
      buf_printf (&b, "\"exitCode\":\"%d\"", exit_code);
      sep = ",";
    }
  if (opt.image)
    {
      buf_printf (&b, "%s\"image\":", sep);
      buf_jstr (&b, opt.image);
      sep = ",";
    }
  if (opt.name)
    {
      buf_printf (&b, "%s\"name\":", sep);
      buf_jstr (&b, opt.name);
    }
  buf_printf (&b, "}},\"scope\":\"local\",\"time\":%lld,\"timeNano\":%lld}\n", (long long) ts.tv_sec,
              (long long) ts.tv_sec * 1000000000LL + ts.tv_nsec);
  int fd = open (opt.events_file, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd >= 0)
    {
      (void) write_all (fd, b.p, b.len);
      close (fd);
    }
  buf_free (&b);
}

static int
log_open (void)
{
  if (opt.log_none)
    return 0;
  if (opt.log_path)
    snprintf (M.log_path, sizeof M.log_path, "%s", opt.log_path);
  else
    snprintf (M.log_path, sizeof M.log_path, "%s/%s-json.log", dir, opt.id);
  M.log_fd = open (M.log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
  if (M.log_fd < 0)
    return -1;
  struct stat st;
  M.log_size = fstat (M.log_fd, &st) == 0 ? st.st_size : 0;
  return 0;
}

/* Docker's rotation: log.(N-2) -> log.(N-1) ... log -> log.1, then a fresh log; with one file,
   the log is truncated (docker keeps only the current file). */
static void
log_rotate (void)
{
  if (opt.log_max_file <= 1)
    {
      if (ftruncate (M.log_fd, 0) == 0)
        M.log_size = 0;
      return;
    }
  char from[sizeof M.log_path + 24], to[sizeof M.log_path + 24];
  for (long i = opt.log_max_file - 1; i >= 2; i--)
    {
      snprintf (from, sizeof from, "%s.%ld", M.log_path, i - 1);
      snprintf (to, sizeof to, "%s.%ld", M.log_path, i);
      rename (from, to); /* ENOENT for the ones not made yet */
    }
  snprintf (to, sizeof to, "%s.1", M.log_path);
  if (rename (M.log_path, to) < 0)
    return;
  int fd = open (M.log_path, O_WRONLY | O_CREAT | O_APPEND | O_TRUNC | O_CLOEXEC, 0640);
  if (fd < 0)
    return; /* keep writing to the renamed file rather than lose lines */
  close (M.log_fd);
  M.log_fd = fd;
  M.log_size = 0;
}

/* One json-file entry: {"log":"...","stream":"stdout","time":"..."} and a newline. */
static void
log_entry (int stream, const char *data, size_t n)
{
  static char line[JSON_MAX (LINE_CAP) + 128];
  if (M.log_fd < 0 || n == 0)
    return;
  char t[40];
  fmt_time (t, now_real ());
  size_t l = 0;
  memcpy (line, "{\"log\":", 7);
  l = 7;
  l += json_escape (line + l, data, n);
  l += (size_t) sprintf (line + l, ",\"stream\":\"%s\",\"time\":\"%s\"}\n", stream ? "stderr" : "stdout", t);
  if (opt.log_max_size > 0 && M.log_size > 0 && M.log_size + (long long) l > opt.log_max_size)
    log_rotate ();
  if (write_all (M.log_fd, line, l) == 0)
    M.log_size += (long long) l;
  /* else (ENOSPC, EIO...): the entry is lost, as docker loses it; the next one may fit */
}

/* Split output into lines for the log; a partial line waits for its end (or the 16 KiB cap). */
static void
log_data (int s, const char *d, size_t n)
{
  if (M.log_fd < 0)
    return;
  while (n > 0)
    {
      const char *nl = memchr (d, '\n', n);
      size_t take = nl ? (size_t) (nl - d) + 1 : n;
      if (M.part_len[s] == 0 && nl && take <= LINE_CAP)
        {
          log_entry (s, d, take);
          d += take;
          n -= take;
          continue;
        }
      size_t room = LINE_CAP - M.part_len[s];
      size_t c = take < room ? take : room;
      memcpy (M.part[s] + M.part_len[s], d, c);
      M.part_len[s] += c;
      d += c;
      n -= c;
      if ((nl && c == take) || M.part_len[s] == LINE_CAP)
        {
          log_entry (s, M.part[s], M.part_len[s]);
          M.part_len[s] = 0;
        }
    }
}

static void
log_flush_partial (void)
{
  for (int s = 0; s < 2; s++)
    if (M.part_len[s])
      {
        log_entry (s, M.part[s], M.part_len[s]);
        M.part_len[s] = 0;
      }
}

/* ------------------------------------------------------------------------------------------ */
/* Attach clients.                                                                             */

static void
client_drop (int i)
{
  struct client *c = M.clients[i];
  close (c->fd);
  buf_free (&c->out);
  free (c);
  M.clients[i] = M.clients[--M.n_clients];
  M.clients[M.n_clients] = NULL;
}

/* Write what we can without blocking.  A client we cannot write to any more keeps its
   connection until we read its end: stdin it sent may still be queued in the socket. */
static void
client_flush (struct client *c)
{
  while (buf_pending (&c->out) && !c->dead_out)
    {
      ssize_t w = send (c->fd, c->out.p + c->out.off, buf_pending (&c->out), MSG_NOSIGNAL | MSG_DONTWAIT);
      if (w < 0 && errno == EINTR)
        continue;
      if (w < 0 && errno == EAGAIN)
        return;
      if (w < 0)
        {
          c->dead_out = true;
          buf_free (&c->out);
          return;
        }
      buf_consumed (&c->out, (size_t) w);
    }
}

/* Done with it: after EXIT once flushed, or as soon as it cannot be written to. */
static bool
client_finished (const struct client *c)
{
  return c->closing && (c->dead_out || !buf_pending (&c->out));
}

static void
client_frame (struct client *c, int type, const void *data, size_t n)
{
  unsigned char h[5] = { (unsigned char) type, (unsigned char) (n >> 24), (unsigned char) (n >> 16),
                         (unsigned char) (n >> 8), (unsigned char) n };
  buf_add (&c->out, h, 5);
  buf_add (&c->out, data, n);
}

/* Container output to every client that asked for that stream; a slow one is dropped rather
   than let it hold up the container or the log. */
static void
clients_output (int stream, const char *data, size_t n)
{
  int want = stream ? H_STDERR : H_STDOUT;
  for (int i = M.n_clients - 1; i >= 0; i--)
    {
      struct client *c = M.clients[i];
      if (c->flags < 0 || !(c->flags & want) || c->closing || c->dead_out)
        continue;
      client_frame (c, stream ? F_STDERR : F_STDOUT, data, n);
      client_flush (c);
      if (buf_pending (&c->out) > CLIENT_OUT_CAP)
        client_drop (i);
    }
}

static void
container_output (int stream, const char *data, size_t n)
{
  log_data (stream, data, n);
  clients_output (stream, data, n);
}

static void
stdin_eof (void)
{
  /* With --stdin-once the first client to end its stdin ends the container's (docker's
     StdinOnce); a pty gets nothing special. */
  if (opt.stdin_once && !opt.terminal && M.in_fd >= 0)
    M.stdin_close_pending = true;
}

static void
client_frame_done (struct client *c)
{
  int type = c->hdr[0];
  if (type == F_HELLO && c->small_len >= 1 && c->flags < 0)
    c->flags = c->small[0];
  else if (type == F_STDIN_EOF)
    stdin_eof ();
  else if (type == F_RESIZE && c->small_len == 4 && M.master >= 0)
    {
      struct winsize ws = { .ws_row = (unsigned short) (c->small[0] << 8 | c->small[1]),
                            .ws_col = (unsigned short) (c->small[2] << 8 | c->small[3]) };
      ioctl (M.master, TIOCSWINSZ, &ws);
    }
}

/* Parse the client's byte stream into frames.  STDIN payload is queued as it arrives. */
static void
client_input (struct client *c, const unsigned char *d, size_t n)
{
  while (n > 0)
    {
      if (c->hdr_len < 5)
        {
          c->hdr[c->hdr_len++] = *d++;
          n--;
          if (c->hdr_len == 5)
            {
              c->need = (uint32_t) c->hdr[1] << 24 | (uint32_t) c->hdr[2] << 16 | (uint32_t) c->hdr[3] << 8 | c->hdr[4];
              c->small_len = 0;
              if (c->need == 0)
                {
                  client_frame_done (c);
                  c->hdr_len = 0;
                }
            }
          continue;
        }
      size_t take = n < c->need ? n : c->need;
      if (c->hdr[0] == F_STDIN)
        {
          if (M.in_fd >= 0 && !M.stdin_close_pending && (c->flags < 0 || (c->flags & H_STDIN)))
            buf_add (&M.in, d, take);
        }
      else
        for (size_t i = 0; i < take && c->small_len < sizeof c->small; i++)
          c->small[c->small_len++] = d[i];
      d += take;
      n -= take;
      c->need -= (uint32_t) take;
      if (c->need == 0)
        {
          client_frame_done (c);
          c->hdr_len = 0;
        }
    }
}

/* Returns false when the client closed (or failed) and should be dropped. */
static bool
client_read (struct client *c)
{
  unsigned char tmp[16384];
  for (;;)
    {
      ssize_t r = recv (c->fd, tmp, sizeof tmp, MSG_DONTWAIT);
      if (r < 0 && errno == EINTR)
        continue;
      if (r < 0 && errno == EAGAIN)
        return true;
      if (r <= 0)
        {
          /* a stdin client that goes away ends stdin, as docker's attach does with StdinOnce */
          if (c->flags >= 0 && (c->flags & H_STDIN))
            stdin_eof ();
          return false;
        }
      if (M.phase == P_CLEANUP_WAIT)
        continue; /* at the end we only wait for EOF */
      client_input (c, tmp, (size_t) r);
      if (buf_pending (&M.in) >= STDIN_CAP)
        return true;
    }
}

static void
accept_clients (void)
{
  if (M.listen_fd < 0)
    return;
  for (;;)
    {
      int fd = accept4 (M.listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd < 0)
        {
          if (errno == EINTR || errno == ECONNABORTED)
            continue;
          return;
        }
      struct client *c = M.n_clients < MAX_CLIENTS ? calloc (1, sizeof *c) : NULL;
      if (c == NULL)
        {
          close (fd);
          continue;
        }
      c->fd = fd;
      c->flags = -1;
      M.clients[M.n_clients++] = c;
    }
}

/* Every client gets EXIT with the code; all but cleanup clients are closed once it is flushed. */
static void
clients_exit (int code)
{
  unsigned char be[4] = { (unsigned char) ((uint32_t) code >> 24), (unsigned char) ((uint32_t) code >> 16),
                          (unsigned char) ((uint32_t) code >> 8), (unsigned char) code };
  for (int i = M.n_clients - 1; i >= 0; i--)
    {
      struct client *c = M.clients[i];
      if (c->closing)
        continue;
      if (!c->dead_out)
        client_frame (c, F_EXIT, be, 4);
      if (c->flags < 0 || !(c->flags & H_CLEANUP))
        c->closing = true;
      client_flush (c);
      if (client_finished (c))
        client_drop (i);
    }
}

static bool
have_cleanup_client (void)
{
  for (int i = 0; i < M.n_clients; i++)
    if (M.clients[i]->flags >= 0 && (M.clients[i]->flags & H_CLEANUP))
      return true;
  return false;
}

static bool
have_unflushed_client (void)
{
  for (int i = 0; i < M.n_clients; i++)
    if (M.clients[i]->closing && !client_finished (M.clients[i]))
      return true;
  return false;
}

/* ------------------------------------------------------------------------------------------ */
/* The container: create, start, cgroup, exit.                                                 */

static void
close_stdio (void)
{
  close_fd (&M.in_fd);
  close_fd (&M.out_fd[0]);
  close_fd (&M.out_fd[1]);
  close_fd (&M.master);
  buf_free (&M.in);
  M.stdin_close_pending = false;
}

/* The container's cgroup, from /proc/PID/cgroup (host view): the v1 memory hierarchy's path and
   the unified one's. */
static void
read_cgroup (pid_t pid)
{
  char path[64], text[4096];
  M.cg_memory[0] = M.cg_unified[0] = '\0';
  snprintf (path, sizeof path, "/proc/%d/cgroup", (int) pid);
  if (read_small (path, text, sizeof text) <= 0)
    return;
  for (char *save = NULL, *line = strtok_r (text, "\n", &save); line; line = strtok_r (NULL, "\n", &save))
    {
      char *c1 = strchr (line, ':');
      char *c2 = c1 ? strchr (c1 + 1, ':') : NULL;
      if (!c2)
        continue;
      *c2 = '\0';
      const char *ctrls = c1 + 1, *cg = c2 + 1;
      if (*ctrls == '\0')
        snprintf (M.cg_unified, sizeof M.cg_unified, "%s", cg);
      else
        {
          /* the controller list is comma separated: find "memory" as a whole word */
          for (const char *p = ctrls; (p = strstr (p, "memory")); p += 6)
            if ((p == ctrls || p[-1] == ',') && (p[6] == '\0' || p[6] == ','))
              snprintf (M.cg_memory, sizeof M.cg_memory, "%s", cg);
        }
    }
}

static long long
read_counter (const char *file, const char *key)
{
  char text[2048];
  if (read_small (file, text, sizeof text) <= 0)
    return -1;
  size_t kl = strlen (key);
  for (char *p = text; p && *p; p = strchr (p, '\n') ? strchr (p, '\n') + 1 : NULL)
    if (strncmp (p, key, kl) == 0 && p[kl] == ' ')
      return atoll (p + kl + 1);
  return -1;
}

/* How many times the kernel OOM-killed something in the container's cgroup: v1
   memory.oom_control, else v2 memory.events (at /sys/fs/cgroup or, hybrid, .../unified). */
static long long
oom_count (void)
{
  char f[PATH_MAX + 64];
  long long n = -1, v;
  if (M.cg_memory[0])
    {
      snprintf (f, sizeof f, "/sys/fs/cgroup/memory%s/memory.oom_control", M.cg_memory);
      if ((v = read_counter (f, "oom_kill")) > n)
        n = v;
    }
  if (M.cg_unified[0])
    {
      snprintf (f, sizeof f, "/sys/fs/cgroup%s/memory.events", M.cg_unified);
      if ((v = read_counter (f, "oom_kill")) > n)
        n = v;
      snprintf (f, sizeof f, "/sys/fs/cgroup/unified%s/memory.events", M.cg_unified);
      if ((v = read_counter (f, "oom_kill")) > n)
        n = v;
    }
  return n;
}

/* A short path for the console socket: DIR/console.sock if it fits in sun_path, else a private
   directory in /tmp (DIR may be long; a unix socket path may not). */
static int
console_listen (char *path, size_t cap, char *tmpdir)
{
  tmpdir[0] = '\0';
  struct sockaddr_un sa = { .sun_family = AF_UNIX };
  snprintf (path, cap, "%s/console.sock", dir);
  if (strlen (path) >= sizeof sa.sun_path)
    {
      strcpy (tmpdir, "/tmp/budu-monitor-XXXXXX");
      if (mkdtemp (tmpdir) == NULL)
        return -1;
      snprintf (path, cap, "%s/console.sock", tmpdir);
    }
  unlink (path);
  memcpy (sa.sun_path, path, strlen (path) + 1); /* fits: checked above */
  int fd = socket (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return -1;
  if (bind (fd, (struct sockaddr *) &sa, sizeof sa) < 0 || listen (fd, 1) < 0)
    {
      close (fd);
      return -1;
    }
  return fd;
}

/*
 * RUNTIME create --bundle DIR --pid-file DIR/pidfile [--console-socket S] ID, with the stdio the
 * container keeps: pipes for stdout/stderr (and stdin with --stdin), or a pty whose master the
 * runtime sends us.  0, or -1 with M.error set.
 *
 * Without a terminal it is `RUNTIME run --detach ...` instead, once the engine said start: one
 * runtime process instead of two (create + start) on every start, which is most of a start's
 * cost.  A terminal needs the gap between create and start, to be given its size before the
 * container's first line.
 */
static bool
run_mode (void)
{
  return !opt.terminal;
}

static int
create_container (void)
{
  int child[3] = { devnull, devnull, devnull };
  int p_out[2] = { -1, -1 }, p_err[2] = { -1, -1 }, p_in[2] = { -1, -1 };
  int console = -1;
  char con_path[PATH_MAX + 32], tmpdir[64], pidfile[PATH_MAX + 16];
  int rc = -1;

  M.error[0] = '\0';
  M.pid = 0;
  M.exited = false;
  M.n_early = 0;
  snprintf (pidfile, sizeof pidfile, "%s/pidfile", dir);
  unlink (pidfile);

  /* stderr: the container's stderr pipe, or (pty) a pipe just for the runtime's messages */
  if (pipe2 (p_err, O_CLOEXEC) < 0)
    goto sys_fail;
  set_nonblock (p_err[0]);
  child[2] = p_err[1];
  if (opt.terminal)
    {
      console = console_listen (con_path, sizeof con_path, tmpdir);
      if (console < 0)
        goto sys_fail;
    }
  else
    {
      if (pipe2 (p_out, O_CLOEXEC) < 0)
        goto sys_fail;
      set_nonblock (p_out[0]);
      child[1] = p_out[1];
      if (opt.stdin_open)
        {
          if (pipe2 (p_in, O_CLOEXEC) < 0)
            goto sys_fail;
          set_nonblock (p_in[1]);
          child[0] = p_in[0];
        }
    }

  const char *args[12];
  int k = 0;
  args[k++] = run_mode () ? "run" : "create";
  if (run_mode ())
    args[k++] = "--detach";
  args[k++] = "--bundle";
  args[k++] = dir;
  args[k++] = "--pid-file";
  args[k++] = pidfile;
  if (opt.terminal)
    {
      args[k++] = "--console-socket";
      args[k++] = con_path;
    }
  args[k++] = opt.id;
  args[k] = NULL;
  int master = -1;
  /* With `run --detach` the container may write to stderr before the runtime returns: that is
     the container's output, left in the pipe for the log.  Only if the call fails is what the
     pipe holds the runtime's message. */
  int code = run_runtime (args, child[0], child[1], child[2], run_mode () ? -1 : p_err[0], console, &master,
                          M.error, sizeof M.error);
  if (code != 0 && run_mode ())
    {
      char text[8192];
      ssize_t n = read (p_err[0], text, sizeof text - 1);
      if (n > 0)
        {
          text[n] = '\0';
          char msg[sizeof M.error];
          runtime_message (text, msg, sizeof msg);
          if (msg[0])
            snprintf (M.error, sizeof M.error, "%s", msg);
        }
    }

  /* our copies of the container's ends must go, or we would never see EOF */
  close_fd (&p_out[1]);
  close_fd (&p_err[1]);
  close_fd (&p_in[0]);
  if (console >= 0)
    {
      close (console);
      unlink (con_path);
      if (tmpdir[0])
        rmdir (tmpdir);
    }
  if (code != 0)
    {
      close_fd (&master);
      goto out;
    }

  if (opt.terminal)
    {
      if (master < 0)
        {
          snprintf (M.error, sizeof M.error, "%s create: no terminal was sent on the console socket", opt.runtime);
          goto out;
        }
      set_nonblock (master);
      M.master = master;
      M.out_fd[0] = fcntl (master, F_DUPFD_CLOEXEC, 3);
      if (opt.stdin_open)
        M.in_fd = fcntl (master, F_DUPFD_CLOEXEC, 3);
      close_fd (&p_err[0]);
    }
  else
    {
      M.out_fd[0] = p_out[0];
      M.out_fd[1] = p_err[0]; /* what the runtime printed on it during create was read above */
      M.in_fd = p_in[1];
      p_out[0] = p_err[0] = p_in[1] = -1;
    }

  char text[64];
  if (read_small (pidfile, text, sizeof text) <= 0 || atoi (text) <= 0)
    {
      snprintf (M.error, sizeof M.error, "%s create: it wrote no pid file", opt.runtime);
      close_stdio ();
      runtime_delete ();
      goto out;
    }
  M.pid = atoi (text);
  for (int i = 0; i < M.n_early && i < 16; i++)
    if (M.early_pid[i] == M.pid)
      {
        M.exited = true;
        M.wstatus = M.early_status[i];
      }
  read_cgroup (M.pid);
  M.oom_base = oom_count ();
  rc = 0;
  goto out;

sys_fail:
  snprintf (M.error, sizeof M.error, "create: %s", strerror (errno));
out:
  close_fd (&p_out[0]);
  close_fd (&p_out[1]);
  close_fd (&p_err[0]);
  close_fd (&p_err[1]);
  close_fd (&p_in[0]);
  close_fd (&p_in[1]);
  return rc;
}

static void
unmount_rootfs (void)
{
  /* The engine mounted it for this run; EINVAL: not a mount point (any more). */
  umount2 ("rootfs", MNT_DETACH);
}

static bool
stop_requested (void)
{
  return access ("stop-requested", F_OK) == 0;
}

static void health_reset (void);
static void health_cancel (void);

/* RUNTIME start ID; the status file says running before anyone hears it started. */
static int
start_container (void)
{
  const char *args[] = { "start", opt.id, NULL };
  M.started_at = now_real ();
  M.started_mono = mono_ms ();
  if (run_mode ())
    {
      /* `run --detach` started it already */
      if (create_container () < 0)
        return -1;
    }
  else if (runtime_simple (args, M.error, sizeof M.error) != 0)
    return -1;
  M.error[0] = '\0';
  M.phase = P_RUNNING;
  M.exit_code = 0;
  M.oom_killed = false;
  health_reset ();
  write_status ();
  write_event ("start", -1);
  return 0;
}

/* The engine is gone before `start`, or create/start failed: leave nothing behind, so that the
   container is back to "created" (no status file, rootfs not mounted). */
static void __attribute__ ((noreturn))
abort_container (int code)
{
  close_stdio ();
  if (M.pid > 0)
    runtime_delete ();
  unmount_rootfs ();
  unlink ("status");
  unlink ("attach");
  exit (code);
}

static void
sync_send (const char *key, const char *value_json_or_null, const char *str)
{
  if (opt.sync_fd < 0)
    return;
  struct buf b = { 0 };
  buf_printf (&b, "{\"%s\": ", key);
  if (value_json_or_null)
    buf_str (&b, value_json_or_null);
  else
    buf_jstr (&b, str);
  buf_str (&b, "}\n");
  (void) write_all (opt.sync_fd, b.p, b.len);
  buf_free (&b);
}

/* docker's exit codes for a start that failed: 127 not found, 126 not executable, else 128 */
static int
start_failure_code (const char *msg)
{
  if (strcasestr (msg, "not found") || strcasestr (msg, "no such file"))
    return 127;
  if (strcasestr (msg, "permission denied") || strcasestr (msg, "not executable"))
    return 126;
  return 128;
}

/* ------------------------------------------------------------------------------------------ */
/* Health checks: RUNTIME exec ID ARGS..., never waited for in a blocking way.                 */

static void
health_reset (void)
{
  if (!opt.n_health_args)
    return;
  health_cancel ();
  H.status = HS_STARTING;
  H.streak = 0;
  H.next_at = mono_ms () + opt.health_interval;
}

static void
health_cancel (void)
{
  if (H.pid > 0)
    kill (H.pid, SIGKILL); /* reap() collects it; its result is ignored */
  H.pid = 0;
  close_fd (&H.fd);
}

static void
health_spawn (void)
{
  int p[2];
  if (pipe2 (p, O_CLOEXEC) < 0)
    {
      H.next_at = mono_ms () + opt.health_interval;
      return;
    }
  set_nonblock (p[0]);
  const char **args = calloc ((size_t) opt.n_health_args + 3, sizeof (char *));
  if (!args)
    _exit (1);
  args[0] = "exec";
  args[1] = opt.id;
  for (int i = 0; i < opt.n_health_args; i++)
    args[2 + i] = opt.health_args[i];
  const char **argv = runtime_argv (args);
  free (args);
  H.done = false;
  H.timed_out = false;
  H.len = 0;
  H.start = now_real ();
  H.deadline = mono_ms () + opt.health_timeout;
  H.pid = spawn (argv, devnull, p[1], p[1], true);
  free (argv);
  close (p[1]);
  if (H.pid < 0)
    {
      H.pid = 0;
      close (p[0]);
      H.next_at = mono_ms () + opt.health_interval;
      return;
    }
  H.fd = p[0];
}

static void
health_read (void)
{
  char tmp[4096];
  for (;;)
    {
      ssize_t r = read (H.fd, tmp, sizeof tmp);
      if (r < 0 && errno == EINTR)
        continue;
      if (r == 0 || (r < 0 && errno != EAGAIN))
        {
          close_fd (&H.fd);
          return;
        }
      if (r < 0)
        return;
      size_t room = sizeof H.out - H.len, c = (size_t) r < room ? (size_t) r : room;
      memcpy (H.out + H.len, tmp, c); /* the rest is read and dropped, so the probe never blocks */
      H.len += c;
    }
}

/* The probe ended (or timed out): docker's handleProbeResult. */
static void
health_done (void)
{
  if (H.fd >= 0)
    health_read ();
  close_fd (&H.fd);
  int code;
  if (H.timed_out)
    {
      code = -1;
      H.len = (size_t) snprintf (H.out, sizeof H.out, "Health check exceeded timeout (%ldms)", opt.health_timeout);
    }
  else
    code = WIFEXITED (H.wstatus) ? WEXITSTATUS (H.wstatus) : 128 + WTERMSIG (H.wstatus);
  H.pid = 0;

  if (H.n_log == HEALTH_LOG_MAX)
    {
      memmove (&H.log[0], &H.log[1], sizeof H.log[0] * (HEALTH_LOG_MAX - 1));
      H.n_log--;
    }
  H.log[H.n_log].start = H.start;
  H.log[H.n_log].end = now_real ();
  H.log[H.n_log].code = code;
  memcpy (H.log[H.n_log].out, H.out, H.len);
  H.log[H.n_log].len = H.len;
  H.n_log++;

  enum health_status old = H.status;
  if (code == 0)
    {
      H.streak = 0;
      H.status = HS_HEALTHY;
    }
  else
    {
      /* While starting (never healthy yet) and within the start period, failures don't count. */
      int64_t since = (int64_t) (H.start.tv_sec - M.started_at.tv_sec) * 1000
                      + (H.start.tv_nsec - M.started_at.tv_nsec) / 1000000;
      if (!(H.status == HS_STARTING && since < opt.health_start_period))
        {
          H.streak++;
          if (H.streak >= opt.health_retries)
            H.status = HS_UNHEALTHY;
        }
    }
  write_status ();
  if (H.status != old)
    {
      char ev[64];
      snprintf (ev, sizeof ev, "health_status: %s", health_name (H.status));
      write_event (ev, -1);
    }
  H.next_at = mono_ms () + opt.health_interval;
}

/* ------------------------------------------------------------------------------------------ */
/* The end.                                                                                    */

static void __attribute__ ((noreturn))
exit_command (bool had_cleanup_client)
{
  /* A cleanup client (the CLI with --rm) that removed the container has done the work. */
  if (had_cleanup_client && access ("config.json", F_OK) < 0 && errno == ENOENT)
    exit (0);
  if (opt.exit_command)
    {
      const char **argv = calloc ((size_t) opt.n_exit_args + 2, sizeof (char *));
      if (argv)
        {
          argv[0] = opt.exit_command;
          for (int i = 0; i < opt.n_exit_args; i++)
            argv[i + 1] = opt.exit_args[i];
          reset_signals ();
          execv (opt.exit_command, (char *const *) argv);
        }
      exit (1);
    }
  exit (0);
}

/* No restart: unmount, final status, then EXIT to the clients.  Cleanup clients may keep us a
   little longer (they remove the container, or not). */
static void
final_end (void)
{
  health_cancel ();
  unmount_rootfs ();
  M.phase = P_CLEANUP_WAIT;
  write_status ();
  unlink ("attach");
  close_fd (&M.listen_fd);
  clients_exit (M.exit_code);
  M.had_cleanup_client = have_cleanup_client ();
  if (M.had_cleanup_client || have_unflushed_client ())
    {
      /* the main loop waits for them */
      M.cleanup_deadline = mono_ms () + CLEANUP_WAIT_MS;
      M.flush_deadline = mono_ms () + 5000;
      return;
    }
  exit_command (false);
}

static bool
should_restart (void)
{
  if (stop_requested ())
    return false;
  switch (opt.restart)
    {
    case R_ALWAYS:
    case R_UNLESS_STOPPED:
      return true;
    case R_ON_FAILURE:
      return M.exit_code != 0 && (opt.max_retries == 0 || M.restart_count < opt.max_retries);
    default:
      return false;
    }
}

/* The container exited and its output is drained: delete it, then restart or end. */
static void
container_ended (void)
{
  if (M.in_fd >= 0 || M.out_fd[0] >= 0 || M.out_fd[1] >= 0)
    {
      log_flush_partial ();
      close_stdio ();
    }
  health_cancel ();
  bool restart = should_restart ();
  if (!restart && have_cleanup_client ())
    {
      /* a --rm client is waiting to remove the container: tell it now (the rootfs is unmounted
         and the status final before EXIT), and delete the runtime's container while it works */
      if (M.oom_killed)
        write_event ("oom", -1);
      write_event ("die", M.exit_code);
      final_end ();
      runtime_delete ();
      return;
    }
  runtime_delete ();
  if (M.oom_killed)
    write_event ("oom", -1);
  write_event ("die", M.exit_code);

  if (!restart)
    {
      final_end ();
      return;
    }
  /* docker's backoff: 100 ms doubling each consecutive restart, at most a minute, back to 100 ms
     once the container ran 10 s */
  int64_t ran = mono_ms () - M.started_mono;
  M.backoff_ms = M.backoff_ms ? M.backoff_ms * 2 : 100;
  if (ran >= 10000)
    M.backoff_ms = 100;
  if (M.backoff_ms > 60000)
    M.backoff_ms = 60000;
  M.restart_count++;
  M.restart_at = mono_ms () + M.backoff_ms;
  M.phase = P_RESTARTING;
  write_status ();
  clients_exit (M.exit_code);
}

/* The backoff is over: create and start it again ourselves. */
static void
restart_container (void)
{
  if (stop_requested ())
    {
      final_end ();
      return;
    }
  if ((run_mode () || create_container () == 0) && start_container () == 0)
    return;
  if (M.pid > 0)
    runtime_delete ();
  close_stdio ();
  M.exit_code = start_failure_code (M.error);
  M.finished_at = now_real ();
  final_end ();
}

/* The container's init is gone: remember how it ended, then drain its output. */
static void
container_exited (void)
{
  int st = M.wstatus;
  M.exit_code = WIFEXITED (st) ? WEXITSTATUS (st) : 128 + WTERMSIG (st);
  M.finished_at = now_real ();
  /* read before `delete` removes the cgroup */
  long long n = oom_count ();
  M.oom_killed = n > (M.oom_base < 0 ? 0 : M.oom_base);
  M.phase = P_DRAINING;
  M.drain_deadline = mono_ms () + DRAIN_MS;
  buf_free (&M.in); /* nobody will read it now */
  M.stdin_close_pending = false;
  close_fd (&M.in_fd);
}

/* ------------------------------------------------------------------------------------------ */
/* Setup and the main loop.                                                                    */

static void
daemonize (void)
{
  pid_t pid = fork ();
  if (pid < 0)
    usage_error ("fork: %s", strerror (errno));
  if (pid > 0)
    _exit (0); /* the caller's wait returns at once; it hears from us on the sync fd */
  setsid ();
  prctl (PR_SET_CHILD_SUBREAPER, 1);
  /* the sync fd must not land on 0-2, which become /dev/null */
  if (opt.sync_fd <= 2)
    {
      int fd = fcntl (opt.sync_fd, F_DUPFD_CLOEXEC, 3);
      if (fd >= 0)
        opt.sync_fd = fd;
    }
  int nul = open ("/dev/null", O_RDWR);
  if (nul >= 0)
    {
      for (int i = 0; i < 3; i++)
        if (i != opt.sync_fd)
          dup2 (nul, i);
      if (nul > 2)
        close (nul);
    }
  /* close everything else we inherited */
  if (opt.sync_fd > 3)
    close_range (3, (unsigned) opt.sync_fd - 1, 0);
  close_range ((unsigned) opt.sync_fd + 1, ~0U, 0);
  fcntl (opt.sync_fd, F_SETFD, FD_CLOEXEC);
  signal (SIGPIPE, SIG_IGN);
}

static int
attach_listen (void)
{
  /* bound by its relative name (we are in DIR): DIR may be longer than sun_path allows */
  struct sockaddr_un sa = { .sun_family = AF_UNIX, .sun_path = "attach" };
  unlink ("attach");
  int fd = socket (AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return -1;
  if (bind (fd, (struct sockaddr *) &sa, sizeof sa) < 0 || listen (fd, 16) < 0)
    {
      close (fd);
      return -1;
    }
  return fd;
}

/* Read container output from one fd; false at EOF (a pty reports EIO once the slave is gone). */
static bool
read_output (int stream, int fd)
{
  static char tmp[32768];
  for (int rounds = 0; rounds < 16; rounds++) /* bounded: let the others have a turn */
    {
      ssize_t r = read (fd, tmp, sizeof tmp);
      if (r < 0 && errno == EINTR)
        continue;
      if (r < 0 && errno == EAGAIN)
        return true;
      if (r <= 0)
        return false;
      container_output (stream, tmp, (size_t) r);
    }
  return true;
}

static void
write_stdin (void)
{
  while (buf_pending (&M.in))
    {
      ssize_t w = write (M.in_fd, M.in.p + M.in.off, buf_pending (&M.in));
      if (w < 0 && errno == EINTR)
        continue;
      if (w < 0 && errno == EAGAIN)
        return;
      if (w < 0)
        {
          /* EPIPE: the container closed its stdin; EIO: the pty is gone */
          buf_free (&M.in);
          if (!opt.terminal)
            close_fd (&M.in_fd);
          return;
        }
      buf_consumed (&M.in, (size_t) w);
    }
}

static void
handle_sync (void)
{
  static char line[256];
  static size_t len;
  ssize_t r = read (opt.sync_fd, line + len, sizeof line - 1 - len);
  if (r < 0 && (errno == EINTR || errno == EAGAIN))
    return;
  if (r <= 0)
    abort_container (0); /* EOF before start: the engine died; the container goes back to created */
  len += (size_t) r;
  line[len] = '\0';
  char *nl = strchr (line, '\n');
  if (!nl)
    {
      if (len == sizeof line - 1)
        len = 0;
      return;
    }
  *nl = '\0';
  if (strcmp (line, "start") != 0)
    {
      memmove (line, nl + 1, len - (size_t) (nl + 1 - line));
      len -= (size_t) (nl + 1 - line);
      return;
    }
  /* Clients that connected before `start` must see all the output: take their HELLO first. */
  accept_clients ();
  for (int i = M.n_clients - 1; i >= 0; i--)
    if (!client_read (M.clients[i]))
      client_drop (i);
  if (start_container () < 0)
    {
      sync_send ("error", NULL, M.error);
      abort_container (1);
    }
  sync_send ("started", "true", NULL);
  close_fd (&opt.sync_fd);
}

int
main (int argc, char **argv)
{
  parse_args (argc, argv);
  if (chdir (dir) < 0)
    usage_error ("--bundle %s: %s", dir, strerror (errno));
  daemonize ();

  sigset_t mask;
  sigemptyset (&mask);
  sigaddset (&mask, SIGCHLD);
  sigaddset (&mask, SIGTERM);
  sigaddset (&mask, SIGINT);
  sigaddset (&mask, SIGHUP);
  sigprocmask (SIG_BLOCK, &mask, NULL);
  M.sigfd = signalfd (-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
  devnull = open ("/dev/null", O_RDWR | O_CLOEXEC);
  M.restart_count = opt.restart_count;
  if (M.sigfd < 0 || devnull < 0)
    {
      sync_send ("error", NULL, "signalfd or /dev/null: cannot open");
      exit (1);
    }
  M.listen_fd = attach_listen ();
  if (M.listen_fd < 0)
    {
      char msg[PATH_MAX + 64];
      snprintf (msg, sizeof msg, "attach socket %s/attach: %s", dir, strerror (errno));
      sync_send ("error", NULL, msg);
      exit (1);
    }
  if (log_open () < 0)
    {
      char msg[sizeof M.log_path + 64];
      snprintf (msg, sizeof msg, "log %s: %s", M.log_path, strerror (errno));
      sync_send ("error", NULL, msg);
      unlink ("attach");
      exit (1);
    }
  if (run_mode ())
    sync_send ("ready", "true", NULL); /* created and started at once on `start` */
  else
    {
      if (create_container () < 0)
        {
          sync_send ("error", NULL, M.error);
          abort_container (1);
        }
      char pid_json[32];
      snprintf (pid_json, sizeof pid_json, "%d", (int) M.pid);
      sync_send ("pid", pid_json, NULL);
    }
  M.phase = P_CREATED;

  /* The loop.  The pollfd slots are rebuilt every turn: a few dozen fds at most. */
  for (;;)
    {
      struct pollfd p[8 + MAX_CLIENTS];
      int n = 0;
      int i_sig = n;
      p[n++] = (struct pollfd){ .fd = M.sigfd, .events = POLLIN };
      int i_sync = n;
      p[n++] = (struct pollfd){ .fd = M.phase == P_CREATED ? opt.sync_fd : -1, .events = POLLIN };
      int i_listen = n;
      p[n++] = (struct pollfd){ .fd = M.listen_fd, .events = POLLIN };
      int i_out = n;
      p[n++] = (struct pollfd){ .fd = M.out_fd[0], .events = POLLIN };
      p[n++] = (struct pollfd){ .fd = M.out_fd[1], .events = POLLIN };
      int i_in = n;
      p[n++] = (struct pollfd){ .fd = buf_pending (&M.in) ? M.in_fd : -1, .events = POLLOUT };
      int i_health = n;
      p[n++] = (struct pollfd){ .fd = H.fd, .events = POLLIN };
      int i_cl = n;
      bool stdin_full = buf_pending (&M.in) >= STDIN_CAP;
      for (int i = 0; i < M.n_clients; i++)
        {
          struct client *c = M.clients[i];
          short ev = buf_pending (&c->out) && !c->dead_out ? POLLOUT : 0;
          /* while the container's stdin is full, stop reading clients (not even for POLLHUP,
             which poll would report at once, again and again) */
          if (!stdin_full)
            ev |= POLLIN;
          p[n++] = (struct pollfd){ .fd = ev ? c->fd : -1, .events = ev };
        }

      int64_t now = mono_ms ();
      int64_t wake = -1;
#define WAKE_AT(t)                                                                                                     \
  do                                                                                                                   \
    {                                                                                                                  \
      int64_t _t = (t) - now;                                                                                          \
      if (_t < 0)                                                                                                      \
        _t = 0;                                                                                                        \
      if (wake < 0 || _t < wake)                                                                                       \
        wake = _t;                                                                                                     \
    }                                                                                                                  \
  while (0)
      if (M.phase == P_DRAINING)
        WAKE_AT (M.out_fd[0] < 0 && M.out_fd[1] < 0 ? now : M.drain_deadline); /* EOF may have come first */
      if (M.phase == P_RESTARTING)
        WAKE_AT (M.restart_at < now + 100 ? M.restart_at : now + 100); /* and look for stop-requested */
      if (M.phase == P_CLEANUP_WAIT)
        WAKE_AT (have_cleanup_client () ? M.cleanup_deadline : M.flush_deadline);
      if (M.phase == P_RUNNING && opt.n_health_args)
        WAKE_AT (H.pid > 0 ? H.deadline : H.next_at);
      if (M.phase == P_RUNNING && M.exited)
        wake = 0;

      int r = poll (p, (nfds_t) n, (int) wake);
      if (r < 0 && errno != EINTR)
        exit (1);

      if (r > 0 && p[i_sig].revents)
        handle_signals ();

      if (r > 0)
        {
          /* clients first: their HELLO must be in before `start` and output */
          for (int i = M.n_clients - 1; i >= 0; i--)
            {
              short rev = p[i_cl + i].revents;
              struct client *c = M.clients[i];
              if (!rev)
                continue;
              if ((p[i_cl + i].events & POLLOUT) && (rev & (POLLOUT | POLLHUP | POLLERR)))
                client_flush (c);
              if (client_finished (c))
                client_drop (i);
              else if ((p[i_cl + i].events & POLLIN) && (rev & (POLLIN | POLLHUP | POLLERR)) && !client_read (c))
                client_drop (i);
            }
          if (p[i_listen].revents)
            accept_clients ();
          for (int s = 0; s < 2; s++)
            if (p[i_out + s].revents && !read_output (s, M.out_fd[s]))
              {
                /* EOF on one stream: the other one goes on */
                if (M.part_len[s])
                  {
                    log_entry (s, M.part[s], M.part_len[s]);
                    M.part_len[s] = 0;
                  }
                close_fd (&M.out_fd[s]);
              }
          if (p[i_in].revents && M.in_fd >= 0)
            write_stdin ();
          if (p[i_health].revents && H.fd >= 0)
            health_read ();
        }
      if (M.stdin_close_pending && !buf_pending (&M.in))
        {
          close_fd (&M.in_fd);
          M.stdin_close_pending = false;
        }

      if (r > 0 && p[i_sync].revents && M.phase == P_CREATED)
        handle_sync ();

      now = mono_ms ();
      switch (M.phase)
        {
        case P_CREATED:
          if (M.exited)
            {
              sync_send ("error", NULL, "the container's process exited before start");
              abort_container (1);
            }
          break;
        case P_RUNNING:
          if (M.exited)
            {
              health_cancel ();
              container_exited ();
              break;
            }
          if (opt.n_health_args)
            {
              if (H.pid > 0 && H.done)
                health_done ();
              else if (H.pid > 0 && now >= H.deadline && !H.timed_out)
                {
                  H.timed_out = true;
                  H.deadline = now + 1000; /* reap() will tell when it is gone */
                  kill (H.pid, SIGKILL);
                }
              else if (H.pid == 0 && now >= H.next_at)
                health_spawn ();
            }
          break;
        case P_DRAINING:
          if ((M.out_fd[0] < 0 && M.out_fd[1] < 0) || now >= M.drain_deadline)
            container_ended ();
          break;
        case P_RESTARTING:
          if (stop_requested ())
            final_end ();
          else if (now >= M.restart_at)
            restart_container ();
          break;
        case P_CLEANUP_WAIT:
          if (now >= M.cleanup_deadline
              || (!have_cleanup_client () && (!have_unflushed_client () || now >= M.flush_deadline)))
            exit_command (M.had_cleanup_client);
          break;
        }
    }
}
