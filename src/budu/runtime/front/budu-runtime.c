/*
 * budu-runtime's front door.
 *
 * containerd, conmon and podman call the runtime once per step: create, start, state (often),
 * kill, delete, each a new process.  For the Python runtime each call costs an interpreter start
 * (10 to 14 ms here, where runc's whole `start` takes 8 to 10 ms), although start, state, kill
 * and delete do almost nothing: read state.json, look at /proc, open a fifo, send a signal,
 * remove a few directories.  This program does exactly that common case and nothing else.
 * Everything else, every error and every case it does not know for sure how to handle (hooks, a
 * container not in the status the verb wants, `kill --all`, `delete -f` of a live container, a
 * process left in a stopped container's cgroup, a state file from an older budu, --debug, any
 * flag it does not know...), it hands over untouched to the Python runtime by exec'ing
 * budu-runtime-py (next to this binary) with the same arguments.  So the Python runtime stays the
 * one implementation of every rule and message; this is only a shortcut for the happy path, and
 * it decides before it changes anything.  The few steps that cannot be undone (unlinking the fifo
 * after opening it, removing the state file last) report their error like the runtime does.
 *
 * The state file is written by budu.runtime.state (compact JSON, ASCII, keys without escapes);
 * the status rule is State.status(), the cgroup steps Cgroup.frozen()/pids()/destroy(), from the
 * "cgroupMode" and "cgroupPaths" that create records.
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define DEFAULT_ROOT "/run/budu-runtime"
#define PY_FRONT "budu-runtime-py"
#define STATE_MAX (4 * 1024 * 1024)
#define MAX_DEPTH 64

static char **orig_argv;
static const char *log_path;
static bool log_json;

/* --------------------------------------------------------------------------- hand over */

/* Run the Python runtime with our own arguments: it decides, words every error, and does the rest. */
static _Noreturn void
python (void)
{
  char self[PATH_MAX];
  ssize_t n = readlink ("/proc/self/exe", self, sizeof self - sizeof PY_FRONT - 1);
  if (n <= 0)
    {
      fprintf (stderr, "budu-runtime: cannot find itself (/proc/self/exe): %s\n", strerror (errno));
      exit (1);
    }
  self[n] = '\0';
  char *slash = strrchr (self, '/');
  strcpy (slash ? slash + 1 : self, PY_FRONT);
  orig_argv[0] = self;
  execv (self, orig_argv);
  fprintf (stderr, "budu-runtime: cannot run %s: %s\n", self, strerror (errno));
  exit (1);
}

/* An error after a step that cannot be undone: stderr and --log, as budu.runtime.log writes them. */
static _Noreturn void
fail (const char *fmt, ...)
{
  char msg[2 * PATH_MAX];
  va_list ap;
  va_start (ap, fmt);
  vsnprintf (msg, sizeof msg, fmt, ap);
  va_end (ap);
  dprintf (2, "budu-runtime: %s\n", msg);
  if (log_path)
    {
      int fd = open (log_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
      if (fd >= 0)
        {
          char now[32];
          time_t t = time (NULL);
          strftime (now, sizeof now, "%Y-%m-%dT%H:%M:%SZ", gmtime (&t));
          if (log_json)
            {
              dprintf (fd, "{\"level\":\"error\",\"msg\":\"");
              for (const char *c = msg; *c; c++)
                if (*c == '"' || *c == '\\')
                  dprintf (fd, "\\%c", *c);
                else if ((unsigned char) *c < 0x20)
                  dprintf (fd, "\\u%04x", *c);
                else
                  dprintf (fd, "%c", *c);
              dprintf (fd, "\",\"time\":\"%s\"}\n", now);
            }
          else
            dprintf (fd, "time=\"%s\" level=error msg=\"%s\"\n", now, msg);
          close (fd);
        }
    }
  exit (1);
}

/* --------------------------------------------------------------------------- JSON, read only */

/* A JSON value as it is in the file: [p, end). */
typedef struct
{
  const char *p, *end;
} span;

static const char *value_end (const char *p, const char *e, int depth);

static const char *
ws (const char *p, const char *e)
{
  while (p < e && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
    p++;
  return p;
}

static const char *
string_end (const char *p, const char *e)
{
  for (p++; p < e; p++)
    {
      if (*p == '"')
        return p + 1;
      if (*p == '\\')
        p++;
      else if ((unsigned char) *p < 0x20)
        return NULL;
    }
  return NULL;
}

/* The members of an object, one by one: *key and *val are set; false at the end (or on garbage). */
static bool
next_member (const char **cur, const char *e, span *key, span *val)
{
  const char *p = ws (*cur, e);
  if (p < e && (*p == ',' || *p == '{'))
    p = ws (p + 1, e);
  if (p >= e || *p != '"')
    return false;
  key->p = p + 1;
  p = string_end (p, e);
  if (!p)
    return false;
  key->end = p - 1;
  p = ws (p, e);
  if (p >= e || *p != ':')
    return false;
  val->p = ws (p + 1, e);
  val->end = value_end (val->p, e, 0);
  if (!val->end)
    return false;
  *cur = val->end;
  return true;
}

static const char *
value_end (const char *p, const char *e, int depth)
{
  if (p >= e || depth > MAX_DEPTH)
    return NULL;
  if (*p == '"')
    return string_end (p, e);
  if (*p == '{' || *p == '[')
    {
      char close = *p == '{' ? '}' : ']';
      p = ws (p + 1, e);
      if (p < e && *p == close)
        return p + 1;
      for (;;)
        {
          if (close == '}')
            {
              if (p >= e || *p != '"' || !(p = string_end (p, e)))
                return NULL;
              p = ws (p, e);
              if (p >= e || *p != ':')
                return NULL;
              p = ws (p + 1, e);
            }
          if (!(p = value_end (p, e, depth + 1)))
            return NULL;
          p = ws (p, e);
          if (p < e && *p == close)
            return p + 1;
          if (p >= e || *p != ',')
            return NULL;
          p = ws (p + 1, e);
        }
    }
  const char *s = p;
  while (p < e && (isalnum ((unsigned char) *p) || *p == '-' || *p == '+' || *p == '.'))
    p++;
  if (p == s)
    return NULL;
  size_t n = p - s;
  if ((n == 4 && !memcmp (s, "true", 4)) || (n == 5 && !memcmp (s, "false", 5)) || (n == 4 && !memcmp (s, "null", 4)))
    return p;
  for (const char *c = s; c < p; c++)
    if (!isdigit ((unsigned char) *c) && !strchr ("-+.eE", *c))
      return NULL;
  return p;
}

static bool
is_key (span key, const char *name)
{
  size_t n = strlen (name);
  return (size_t) (key.end - key.p) == n && !memcmp (key.p, name, n);
}

/* The value of `name` in object `obj` (the last one, as Python's dict keeps); false if absent. */
static bool
get (span obj, const char *name, span *out)
{
  if (obj.p >= obj.end || *obj.p != '{')
    return false;
  const char *cur = obj.p;
  span k, v;
  bool found = false;
  while (next_member (&cur, obj.end, &k, &v))
    if (is_key (k, name))
      {
        *out = v;
        found = true;
      }
  return found;
}

static bool
is_string (span v)
{
  return v.end - v.p >= 2 && *v.p == '"';
}

static bool
is_literal (span v, const char *lit)
{
  size_t n = strlen (lit);
  return (size_t) (v.end - v.p) == n && !memcmp (v.p, lit, n);
}

/* A plain string (no escapes) copied out; false if it is anything else or too long. */
static bool
plain_string (span v, char *buf, size_t cap)
{
  if (!is_string (v) || (size_t) (v.end - v.p - 2) >= cap || memchr (v.p + 1, '\\', v.end - v.p - 2))
    return false;
  memcpy (buf, v.p + 1, v.end - v.p - 2);
  buf[v.end - v.p - 2] = '\0';
  return true;
}

/* A non-negative integer; false for anything else (a float, a string, null). */
static bool
integer (span v, long long *out)
{
  if (v.p >= v.end || v.end - v.p > 18)
    return false;
  long long n = 0;
  for (const char *c = v.p; c < v.end; c++)
    {
      if (!isdigit ((unsigned char) *c))
        return false;
      n = n * 10 + (*c - '0');
    }
  *out = n;
  return true;
}

/* Python's truth of a value that is there: "", 0, [], {}, false and null are false. */
static bool
truthy (span v)
{
  if (is_literal (v, "false") || is_literal (v, "null") || is_literal (v, "\"\"") || is_literal (v, "0"))
    return false;
  if (*v.p == '{' || *v.p == '[')
    return *ws (v.p + 1, v.end) != (*v.p == '{' ? '}' : ']');
  return true;
}

/* --------------------------------------------------------------------------- the container */

/* DIR/NAME into `out` (PATH_MAX bytes); a longer path is left to the runtime. */
static char *
join (char *out, const char *dir, const char *name)
{
  if ((size_t) snprintf (out, PATH_MAX, "%s/%s", dir, name) >= PATH_MAX)
    python ();
  return out;
}

typedef struct
{
  char dir[PATH_MAX];
  char *text;
  span doc;
  long long pid;
  bool alive;
  bool has_cgroup;  /* a cgroupPath: then mode and paths are known */
  bool v2;
  span paths;       /* cgroupPaths: {controller: directory}, "" for the unified one */
} container;

static bool
valid_id (const char *id)
{
  size_t n = strlen (id);
  if (n == 0 || n > 1024 || !strcmp (id, ".") || !strcmp (id, "..") || !strcmp (id, ".seccomp"))
    return false;
  return strspn (id, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_+-.") == n;
}

static char *
read_file (const char *path, size_t cap, size_t *len)
{
  int fd = open (path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return NULL;
  char *buf = malloc (cap + 1);
  size_t n = 0;
  ssize_t r;
  while (buf && n < cap && (r = read (fd, buf + n, cap - n)) > 0)
    n += r;
  close (fd);
  if (!buf || n >= cap)
    {
      free (buf);
      return NULL;
    }
  buf[n] = '\0';
  if (len)
    *len = n;
  return buf;
}

/* Start time of `pid` in clock ticks (field 22 of /proc/PID/stat); -1 if it is gone or a zombie. */
static long long
start_time (long long pid)
{
  char path[64], buf[1024];
  snprintf (path, sizeof path, "/proc/%lld/stat", pid);
  int fd = open (path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return -1;
  ssize_t n = read (fd, buf, sizeof buf - 1);
  close (fd);
  if (n <= 0)
    return -1;
  buf[n] = '\0';
  char *p = strrchr (buf, ')');
  if (!p || p[1] != ' ' || p[2] == 'Z' || p[2] == 'X')
    return -1;
  p += 2;
  for (int field = 0; field < 19; field++)
    {
      p = strchr (p, ' ');
      if (!p)
        return -1;
      p++;
    }
  return strtoll (p, NULL, 10);
}

/* Load ROOT/ID/state.json and what the status needs; anything unexpected goes to Python. */
static void
load (container *c, const char *root, const char *id)
{
  if (!valid_id (id) || snprintf (c->dir, sizeof c->dir, "%s/%s", root, id) >= (int) sizeof c->dir - 32)
    python ();
  char path[PATH_MAX];
  size_t len;
  c->text = read_file (join (path, c->dir, "state.json"), STATE_MAX, &len);
  if (!c->text)
    python ();
  const char *p = c->text;
  if (len >= 3 && !memcmp (p, "\xef\xbb\xbf", 3))
    p += 3;
  c->doc.p = ws (p, c->text + len);
  c->doc.end = value_end (c->doc.p, c->text + len, 0);
  if (!c->doc.end || *c->doc.p != '{' || ws (c->doc.end, c->text + len) != c->text + len)
    python ();

  span v;
  if (get (c->doc, "creating", &v) && truthy (v))
    python ();  /* a create still under way, or one that died half-way */
  c->pid = 0;
  if (get (c->doc, "pid", &v) && !is_literal (v, "null") && !integer (v, &c->pid))
    python ();
  long long want = -2;
  if (get (c->doc, "pidStartTime", &v) && !is_literal (v, "null") && !integer (v, &want))
    python ();
  c->alive = c->pid > 0 && start_time (c->pid) == want;

  c->has_cgroup = get (c->doc, "cgroupPath", &v) && truthy (v);
  if (c->has_cgroup)
    {
      char mode[8];
      if (!get (c->doc, "cgroupMode", &v) || !plain_string (v, mode, sizeof mode)
          || !get (c->doc, "cgroupPaths", &c->paths) || *c->paths.p != '{')
        python ();  /* recorded by an older budu: the Python runtime finds the cgroup itself */
      c->v2 = !strcmp (mode, "v2");
    }
}

static bool
fifo_exists (const container *c)
{
  char path[PATH_MAX];
  return access (join (path, c->dir, "exec.fifo"), F_OK) == 0;
}

/* The directory of `controller` ("" for the unified hierarchy); false if the container has none. */
static bool
cgroup_dir (const container *c, const char *controller, char *out)
{
  span v;
  return get (c->paths, controller, &v) && plain_string (v, out, PATH_MAX - 32);
}

static bool
file_is (const char *dir, const char *name, const char *want)
{
  char path[PATH_MAX];
  char *text = read_file (join (path, dir, name), 4096, NULL);
  if (!text)
    return false;
  size_t n = strlen (text);
  while (n && isspace ((unsigned char) text[n - 1]))
    n--;
  text[n] = '\0';
  char *start = text;
  while (isspace ((unsigned char) *start))
    start++;
  bool same = !strcmp (start, want);
  free (text);
  return same;
}

/* Cgroup.frozen(): v2 asks cgroup.freeze and cgroup.events, v1 the freezer's state. */
static bool
frozen (const container *c)
{
  char dir[PATH_MAX];
  if (!c->has_cgroup)
    return false;
  if (!c->v2)
    return cgroup_dir (c, "freezer", dir) && file_is (dir, "freezer.state", "FROZEN");
  if (!cgroup_dir (c, "", dir) || !file_is (dir, "cgroup.freeze", "1"))
    return false;
  char path[PATH_MAX];
  char *events = read_file (join (path, dir, "cgroup.events"), 4096, NULL);
  if (!events)
    return false;
  bool yes = false;
  for (char *line = events; line && *line; line = strchr (line, '\n') ? strchr (line, '\n') + 1 : NULL)
    if (!strncmp (line, "frozen ", 7))
      {
        yes = line[7] == '1' && (line[8] == '\n' || line[8] == '\0' || isspace ((unsigned char) line[8]));
        break;
      }
  free (events);
  return yes;
}

static const char *
status (const container *c)
{
  if (!c->alive)
    return "stopped";
  if (fifo_exists (c))
    return "created";
  return frozen (c) ? "paused" : "running";
}

/* A hook list of that kind is there and not empty. */
static bool
has_hooks (const container *c, const char *kind)
{
  span hooks, list;
  return get (c->doc, "hooks", &hooks) && get (hooks, kind, &list) && truthy (list);
}

/* --------------------------------------------------------------------------- the verbs */

static void
put_member (const char *key, span value, bool last)
{
  printf ("  \"%s\": %.*s%s\n", key, (int) (value.end - value.p), value.p, last ? "" : ",");
}

/* state.oci_state() as fastjson.dumps(indent=2) prints it: strings go out as state.json has them. */
static int
verb_state (container *c)
{
  static const char *keys[] = { "ociVersion", "id", "bundle", "rootfs", "created" };
  span val[5];
  for (int i = 0; i < 5; i++)
    {
      if (!get (c->doc, keys[i], &val[i]))
        {
          if (i == 1)
            python ();
          val[i].p = i == 0 ? "\"1.0.2\"" : "\"\"";
          val[i].end = val[i].p + strlen (val[i].p);
        }
      if (!is_string (val[i]))
        python ();
    }
  span ann;
  bool with_ann = get (c->doc, "annotations", &ann) && truthy (ann);
  if (with_ann)
    {
      if (*ann.p != '{')
        python ();
      const char *cur = ann.p;
      span k, v;
      while (next_member (&cur, ann.end, &k, &v))
        if (!is_string (v))
          python ();  /* not a string map: leave the formatting to the runtime */
    }
  const char *st = status (c);
  printf ("{\n");
  put_member ("ociVersion", val[0], false);
  put_member ("id", val[1], false);
  printf ("  \"status\": \"%s\",\n", st);
  printf ("  \"pid\": %lld,\n", strcmp (st, "stopped") ? c->pid : 0);
  put_member ("bundle", val[2], false);
  put_member ("rootfs", val[3], false);
  put_member ("created", val[4], false);
  if (!with_ann)
    printf ("  \"owner\": \"\"\n}\n");
  else
    {
      printf ("  \"owner\": \"\",\n  \"annotations\": {");
      const char *cur = ann.p;
      span k, v;
      const char *sep = "\n";
      while (next_member (&cur, ann.end, &k, &v))
        {
          printf ("%s    \"%.*s\": %.*s", sep, (int) (k.end - k.p), k.p, (int) (v.end - v.p), v.p);
          sep = ",\n";
        }
      printf ("\n  }\n}\n");
    }
  return fflush (stdout) ? 1 : 0;
}

/* start: the init waits on the exec fifo; a byte in it sends init on to the user's process. */
static int
verb_start (container *c)
{
  if (!c->alive || !fifo_exists (c) || has_hooks (c, "poststart"))
    python ();
  char fifo[PATH_MAX];
  int fd = open (join (fifo, c->dir, "exec.fifo"), O_WRONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0)
    python ();  /* init is gone (ENXIO), or another start won: the runtime says which */
  /* from here on, like the runtime: the fifo goes first, so the status is "running" at once */
  signal (SIGPIPE, SIG_IGN);
  if (unlink (fifo) < 0)
    fail ("%s: %s", fifo, strerror (errno));
  if (write (fd, "0", 1) != 1)
    fail ("%s", strerror (errno));
  close (fd);
  return 0;
}

static const struct
{
  const char *name;
  int num;
} SIGNALS[] = {
  { "HUP", 1 },    { "INT", 2 },     { "QUIT", 3 },   { "ILL", 4 },     { "TRAP", 5 },  { "ABRT", 6 },
  { "IOT", 6 },    { "BUS", 7 },     { "FPE", 8 },    { "KILL", 9 },    { "USR1", 10 }, { "SEGV", 11 },
  { "USR2", 12 },  { "PIPE", 13 },   { "ALRM", 14 },  { "TERM", 15 },   { "STKFLT", 16 }, { "CHLD", 17 },
  { "CLD", 17 },   { "CONT", 18 },   { "STOP", 19 },  { "TSTP", 20 },   { "TTIN", 21 }, { "TTOU", 22 },
  { "URG", 23 },   { "XCPU", 24 },   { "XFSZ", 25 },  { "VTALRM", 26 }, { "PROF", 27 }, { "WINCH", 28 },
  { "IO", 29 },    { "POLL", 29 },   { "PWR", 30 },   { "SYS", 31 },
};

/* A number, NAME or SIGNAME (budu.kernel.signals); -1 for anything else (RTMIN+n included). */
static int
signal_number (const char *s)
{
  if (*s && strspn (s, "0123456789") == strlen (s))
    return strlen (s) <= 3 ? atoi (s) : -1;
  if (!strncasecmp (s, "SIG", 3))
    s += 3;
  for (size_t i = 0; i < sizeof SIGNALS / sizeof SIGNALS[0]; i++)
    if (!strcasecmp (s, SIGNALS[i].name))
      return SIGNALS[i].num;
  return -1;
}

static int
verb_kill (container *c, const char *sig)
{
  int num = signal_number (sig);
  if (num < 0 || !c->alive)
    python ();
  if (kill ((pid_t) c->pid, num) < 0)
    python ();  /* gone meanwhile, or a signal the kernel refuses: the runtime words it */
  return 0;
}

/* Cgroup._procs_dir(): the hierarchy whose cgroup.procs tells whether a process is left. */
static bool
procs_dir (const container *c, char *out)
{
  if (c->v2)
    return cgroup_dir (c, "", out);
  static const char *pref[] = { "pids", "freezer", "memory", "name=systemd" };
  for (size_t i = 0; i < 4; i++)
    if (cgroup_dir (c, pref[i], out))
      return true;
  const char *cur = c->paths.p;
  span k, v;
  return next_member (&cur, c->paths.end, &k, &v) && plain_string (v, out, PATH_MAX - 32);
}

/* delete of a stopped container: its cgroup (no process left in it) and its state directory. */
static int
verb_delete (container *c)
{
  if (c->alive || has_hooks (c, "poststop"))
    python ();
  char dir[PATH_MAX];
  if (c->has_cgroup && procs_dir (c, dir))
    {
      char path[PATH_MAX];
      char *procs = read_file (join (path, dir, "cgroup.procs"), 1 << 20, NULL);
      if (!procs && errno != ENOENT)
        python ();
      bool empty = true;
      for (char *p = procs; p && *p; p++)
        if (!isspace ((unsigned char) *p))
          empty = false;
      free (procs);
      if (!empty)
        python ();  /* processes outside the container's pid namespace are left: they need killing */
    }
  DIR *d = opendir (c->dir);
  if (!d)
    python ();
  struct dirent *e;
  while ((e = readdir (d)))
    if (e->d_type == DT_DIR && strcmp (e->d_name, ".") && strcmp (e->d_name, ".."))
      python ();  /* not the flat directory create makes */

  /* Cgroup.destroy(): each hierarchy's directory once, v1 ones first, then the unified one */
  if (c->has_cgroup)
    {
      const char *seen[64];
      size_t nseen = 0;
      const char *cur = c->paths.p;
      span k, v;
      while (next_member (&cur, c->paths.end, &k, &v))
        {
          if (!plain_string (v, dir, sizeof dir) || nseen == 64)
            python ();
          bool dup = false;
          for (size_t i = 0; i < nseen; i++)
            dup |= !strcmp (seen[i], dir);
          if (dup)
            continue;
          seen[nseen++] = strdup (dir);
          if (rmdir (dir) < 0 && errno != ENOENT)
            python ();  /* busy (a process just leaving) or a cgroup below it: the runtime retries */
        }
    }

  rewinddir (d);
  int dfd = dirfd (d);
  while ((e = readdir (d)))
    if (strcmp (e->d_name, ".") && strcmp (e->d_name, "..") && strcmp (e->d_name, "state.json")
        && unlinkat (dfd, e->d_name, 0) < 0 && errno != ENOENT)
      python ();
  closedir (d);
  /* the state file last: until it goes, `delete` can be asked again */
  char path[PATH_MAX];
  if (unlink (join (path, c->dir, "state.json")) < 0 && errno != ENOENT)
    python ();
  if (rmdir (c->dir) < 0 && errno != ENOENT)
    fail ("%s: %s", c->dir, strerror (errno));
  return 0;
}

/* --------------------------------------------------------------------------- command line */

/* A global flag that takes a value, with the value in `*value` ("--root=X" or "--root X"). */
static bool
value_flag (char **argv, int *i, const char *name, const char **value)
{
  size_t n = strlen (name);
  if (strncmp (argv[*i], name, n))
    return false;
  if (argv[*i][n] == '=')
    *value = argv[*i] + n + 1;
  else if (argv[*i][n] == '\0' && argv[*i + 1])
    *value = argv[++*i];
  else
    return false;
  return true;
}

int
main (int argc, char **argv)
{
  (void) argc;
  orig_argv = argv;
  const char *root = DEFAULT_ROOT, *format = "text", *ignored;
  int i = 1;
  for (; argv[i] && argv[i][0] == '-'; i++)
    {
      if (value_flag (argv, &i, "--root", &root) || value_flag (argv, &i, "--log", &log_path)
          || value_flag (argv, &i, "--log-format", &format) || value_flag (argv, &i, "--rootless", &ignored)
          || value_flag (argv, &i, "--criu", &ignored) || !strcmp (argv[i], "--systemd-cgroup"))
        continue;
      python ();  /* --debug, --help, --version, or one this front does not know */
    }
  log_json = !strcmp (format, "json");
  const char *verb = argv[i];
  if (!verb || !*root)
    python ();
  /* the verb's own arguments: flags it has are taken anywhere, like the runtime's parser does */
  const char *pos[2] = { NULL, NULL };
  int npos = 0;
  for (i++; argv[i]; i++)
    {
      if (!strcmp (verb, "delete") && (!strcmp (argv[i], "-f") || !strcmp (argv[i], "--force")))
        continue;  /* only a stopped container is deleted here, where --force changes nothing */
      if (argv[i][0] == '-' || npos == 2)
        python ();
      pos[npos++] = argv[i];
    }
  container c;
  if (!strcmp (verb, "state") && npos == 1)
    return load (&c, root, pos[0]), verb_state (&c);
  if (!strcmp (verb, "start") && npos == 1)
    return load (&c, root, pos[0]), verb_start (&c);
  if (!strcmp (verb, "kill") && npos >= 1)
    return load (&c, root, pos[0]), verb_kill (&c, pos[1] ? pos[1] : "TERM");
  if (!strcmp (verb, "delete") && npos == 1)
    return load (&c, root, pos[0]), verb_delete (&c);
  python ();
}
