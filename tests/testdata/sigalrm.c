/*
 * sigalrm: namespace calls under a storm of signals.
 *
 * Usage: sigalrm DIR N
 *
 * Installs a SIGALRM handler without SA_RESTART and an interval timer of
 * 0.5 ms, then makes N each of mkdir, exclusive create (open with
 * O_CREAT|O_EXCL, then close), rename and unlink in DIR. After every call
 * it looks, with SIGALRM blocked, whether the namespace shows what the
 * call reported:
 *
 *   returned 0      the change is there
 *   returned EINTR  the change is not there, and the call is made again
 *   EEXIST, ENOENT  never: the name is this program's own, so such an
 *                   answer means an earlier call that reported failure
 *                   had made the change after all
 *
 * It prints one line of counts per call, then "lies=L errors=E", and exits
 * 0 only when both are 0. A lie is a call whose answer the namespace
 * contradicts; an error is any other failure.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

/* An attempt of a call is given up after this many EINTRs. */
#define MAX_ATTEMPTS 100000

static volatile sig_atomic_t alarms;

static void on_alarm(int sig) {
	(void)sig;
	alarms++;
}

struct counts {
	const char *name;
	long calls;     /* system calls made, retries included */
	long ok;        /* returned 0 */
	long eintr;     /* returned EINTR */
	long lies;      /* answers the namespace contradicts */
	long errors;    /* other failures */
};

static struct counts cmkdir = {.name = "mkdir"}, ccreate = {.name = "create"}, crename = {.name = "rename"},
                     cunlink = {.name = "unlink"};
static sigset_t alrm;

static void quiet(void) { sigprocmask(SIG_BLOCK, &alrm, NULL); }
static void loud(void) { sigprocmask(SIG_UNBLOCK, &alrm, NULL); }

/* exists reports whether path names something, with SIGALRM blocked. */
static int exists(const char *path, struct counts *c) {
	struct stat st;
	if (lstat(path, &st) == 0)
		return 1;
	if (errno != ENOENT) {
		fprintf(stderr, "%s: lstat %s: %s\n", c->name, path, strerror(errno));
		c->errors++;
	}
	return 0;
}

static void lie(struct counts *c, const char *what, const char *path) {
	fprintf(stderr, "LIE %s %s: %s\n", c->name, path, what);
	c->lies++;
}

static void fail(struct counts *c, const char *path, int e) {
	fprintf(stderr, "ERROR %s %s: %s\n", c->name, path, strerror(e));
	c->errors++;
}

static void do_mkdir(const char *p) {
	struct counts *c = &cmkdir;
	for (int attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
		int e = mkdir(p, 0755) == 0 ? 0 : errno;
		c->calls++;
		quiet();
		int there = exists(p, c);
		loud();
		switch (e) {
		case 0:
			c->ok++;
			if (!there)
				lie(c, "returned 0, but it does not exist", p);
			return;
		case EINTR:
			c->eintr++;
			if (there) {
				lie(c, "returned EINTR, but it was made", p);
				return;
			}
			continue;
		case EEXIST:
			lie(c, "returned EEXIST for its own directory", p);
			return;
		default:
			fail(c, p, e);
			return;
		}
	}
	fail(c, p, EINTR);
}

static void do_create(const char *p) {
	struct counts *c = &ccreate;
	for (int attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
		int fd = open(p, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0644);
		int e = fd >= 0 ? 0 : errno;
		c->calls++;
		quiet();
		if (fd >= 0 && close(fd) != 0)
			fail(c, p, errno);
		int there = exists(p, c);
		loud();
		switch (e) {
		case 0:
			c->ok++;
			if (!there)
				lie(c, "returned a descriptor, but it does not exist", p);
			return;
		case EINTR:
			c->eintr++;
			if (there) {
				lie(c, "returned EINTR, but it was made", p);
				return;
			}
			continue;
		case EEXIST:
			lie(c, "returned EEXIST for its own file", p);
			return;
		default:
			fail(c, p, e);
			return;
		}
	}
	fail(c, p, EINTR);
}

static void do_rename(const char *from, const char *to) {
	struct counts *c = &crename;
	for (int attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
		int e = rename(from, to) == 0 ? 0 : errno;
		c->calls++;
		quiet();
		int src = exists(from, c), dst = exists(to, c);
		loud();
		switch (e) {
		case 0:
			c->ok++;
			if (src || !dst)
				lie(c, "returned 0, but the file did not move", from);
			return;
		case EINTR:
			c->eintr++;
			if (!src || dst) {
				lie(c, "returned EINTR, but the file moved", from);
				return;
			}
			continue;
		case ENOENT:
			lie(c, "returned ENOENT for its own file", from);
			return;
		default:
			fail(c, from, e);
			return;
		}
	}
	fail(c, from, EINTR);
}

static void do_unlink(const char *p) {
	struct counts *c = &cunlink;
	for (int attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
		int e = unlink(p) == 0 ? 0 : errno;
		c->calls++;
		quiet();
		int there = exists(p, c);
		loud();
		switch (e) {
		case 0:
			c->ok++;
			if (there)
				lie(c, "returned 0, but it still exists", p);
			return;
		case EINTR:
			c->eintr++;
			if (!there) {
				lie(c, "returned EINTR, but it was removed", p);
				return;
			}
			continue;
		case ENOENT:
			lie(c, "returned ENOENT for its own file", p);
			return;
		default:
			fail(c, p, e);
			return;
		}
	}
	fail(c, p, EINTR);
}

static void print(const struct counts *c) {
	printf("%s calls=%ld ok=%ld eintr=%ld lies=%ld errors=%ld\n", c->name, c->calls, c->ok, c->eintr, c->lies, c->errors);
}

int main(int argc, char **argv) {
	if (argc != 3) {
		fprintf(stderr, "usage: %s DIR N\n", argv[0]);
		return 2;
	}
	const char *dir = argv[1];
	int n = atoi(argv[2]);
	sigemptyset(&alrm);
	sigaddset(&alrm, SIGALRM);

	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_alarm;
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = 0; /* no SA_RESTART: an interrupted call returns EINTR */
	if (sigaction(SIGALRM, &sa, NULL) != 0) {
		perror("sigaction");
		return 2;
	}
	struct itimerval it = {{0, 500}, {0, 500}};
	if (setitimer(ITIMER_REAL, &it, NULL) != 0) {
		perror("setitimer");
		return 2;
	}

	char a[4096], b[4096];
	for (int i = 0; i < n; i++) {
		snprintf(a, sizeof a, "%s/d%d", dir, i);
		do_mkdir(a);
		snprintf(a, sizeof a, "%s/f%d", dir, i);
		snprintf(b, sizeof b, "%s/g%d", dir, i);
		do_create(a);
		do_rename(a, b);
		do_unlink(b);
	}

	struct itimerval off = {{0, 0}, {0, 0}};
	setitimer(ITIMER_REAL, &off, NULL);
	print(&cmkdir);
	print(&ccreate);
	print(&crename);
	print(&cunlink);
	long lies = cmkdir.lies + ccreate.lies + crename.lies + cunlink.lies;
	long errors = cmkdir.errors + ccreate.errors + crename.errors + cunlink.errors;
	printf("alarms=%ld\n", (long)alarms);
	printf("lies=%ld errors=%ld\n", lies, errors);
	return lies == 0 && errors == 0 ? 0 : 1;
}
