// A blocking-query holder for the wake benchmark (test/bench/http-blocking.ts, client "c"): holds
// COUNT GETs of PATH, one per connection, and timestamps each answer when its whole body
// (Content-Length) has arrived. It does what the Node "raw" holder does at a few µs of CPU per
// answer instead of ~30, so that the wake timings show the server rather than the clients that
// share its cores. Built by the benchmark with `cc -O2` (bench/install-deps.sh installs gcc).
//
// usage: wake-holder HOST PORT LOCALADDR COUNT PATH
// stdin, one command per line: stats | report | close. stdout: one JSON line per command, the
// shapes of the Node holder's messages ({"op":"stats",...}, {"op":"report","times":[...]},
// {"op":"close"}), and {"op":"hold"} once every request has been handed to a connection.
// Times are CLOCK_MONOTONIC in ms, the clock of Node's process.hrtime (monoMs()).

#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum { CONNECTING, SENT, HEADERS_DONE, FINISHED, FAILED };

struct conn {
  int fd;
  int state;
  int hlen;       // header bytes kept so far
  long need;      // body bytes still to come once the headers are in
  char head[1024];
};

static struct conn *conns;
static long count, dispatched, connected, pending, done, failed;
static double *times;
static long statuses[600];
static long err_connect, err_reset, err_parse;
static char request[2048];
static int request_len;

static double mono_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static long rss_kib(void) {
  FILE *f = fopen("/proc/self/status", "r");
  char line[256];
  long v = 0;
  if (!f) return 0;
  while (fgets(line, sizeof line, f))
    if (strncmp(line, "VmRSS:", 6) == 0) v = strtol(line + 6, NULL, 10);
  fclose(f);
  return v;
}

static void fail(struct conn *c, long *counter, int ep) {
  if (c->state == FAILED || c->state == FINISHED) return;
  if (c->state == CONNECTING) pending--;
  c->state = FAILED;
  (*counter)++;
  failed++;
  epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
}

static void finish(struct conn *c, int ep) {
  c->state = FINISHED;
  times[done++] = mono_ms();
  epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
}

// Bytes of an answer: headers first (status and Content-Length parsed), then the body counted.
static void consume(struct conn *c, const char *p, long n, int ep) {
  if (c->state == SENT) {
    long room = (long)sizeof c->head - 1 - c->hlen;
    long take = n < room ? n : room;
    memcpy(c->head + c->hlen, p, take);
    c->hlen += take;
    c->head[c->hlen] = 0;
    char *end = strstr(c->head, "\r\n\r\n");
    if (!end) {
      if (c->hlen >= (int)sizeof c->head - 1) fail(c, &err_parse, ep);
      return;
    }
    long header_bytes = end + 4 - c->head;
    int status = atoi(c->head + 9);
    char *cl = strcasestr(c->head, "\r\ncontent-length:");
    if (!cl || cl > end || status < 100 || status > 599) {
      fail(c, &err_parse, ep);
      return;
    }
    statuses[status]++;
    c->need = strtol(cl + 17, NULL, 10);
    c->state = HEADERS_DONE;
    long body_here = c->hlen - header_bytes + (n - take);
    c->need -= body_here;
  } else if (c->state == HEADERS_DONE) {
    c->need -= n;
  }
  if (c->state == HEADERS_DONE && c->need <= 0) finish(c, ep);
}

static void print_stats(void) {
  printf("{\"op\":\"stats\",\"dispatched\":%ld,\"connected\":%ld,\"pending\":%ld,\"done\":%ld,\"statuses\":{", dispatched, connected, pending, done);
  int first = 1;
  for (int s = 100; s < 600; s++) {
    if (!statuses[s]) continue;
    printf("%s\"%d\":%ld", first ? "" : ",", s, statuses[s]);
    first = 0;
  }
  printf("},\"errors\":{");
  first = 1;
  if (err_connect) printf("%s\"ECONNECT\":%ld", first ? "" : ",", err_connect), first = 0;
  if (err_reset) printf("%s\"ECONNRESET\":%ld", first ? "" : ",", err_reset), first = 0;
  if (err_parse) printf("%s\"BAD_ANSWER\":%ld", first ? "" : ",", err_parse), first = 0;
  printf("},\"rssKiB\":%ld}\n", rss_kib());
  fflush(stdout);
}

static void print_report(void) {
  printf("{\"op\":\"report\",\"times\":[");
  for (long i = 0; i < done; i++) printf("%s%.3f", i ? "," : "", times[i]);
  printf("]}\n");
  fflush(stdout);
}

int main(int argc, char **argv) {
  if (argc != 6) {
    fprintf(stderr, "usage: wake-holder HOST PORT LOCALADDR COUNT PATH\n");
    return 2;
  }
  const char *host = argv[1];
  int port = atoi(argv[2]);
  const char *local = argv[3];
  count = atol(argv[4]);
  if (count < 1 || count > 200000 || port < 1 || port > 65535) {
    fprintf(stderr, "wake-holder: bad COUNT or PORT\n");
    return 2;
  }
  request_len = snprintf(request, sizeof request, "GET %s HTTP/1.1\r\nHost: %s:%d\r\n\r\n", argv[5], host, port);
  if (request_len <= 0 || request_len >= (int)sizeof request) {
    fprintf(stderr, "wake-holder: PATH too long\n");
    return 2;
  }
  struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons(port)};
  struct sockaddr_in from = {.sin_family = AF_INET, .sin_port = 0};
  if (inet_pton(AF_INET, host, &to.sin_addr) != 1 || inet_pton(AF_INET, local, &from.sin_addr) != 1) {
    fprintf(stderr, "wake-holder: HOST and LOCALADDR must be IPv4 addresses\n");
    return 2;
  }
  conns = calloc(count, sizeof *conns);
  times = calloc(count, sizeof *times);
  int ep = epoll_create1(0);
  if (!conns || !times || ep < 0) return 1;
  fcntl(0, F_SETFL, fcntl(0, F_GETFL) | O_NONBLOCK);
  struct epoll_event sev = {.events = EPOLLIN, .data.u64 = (uint64_t)-1};
  epoll_ctl(ep, EPOLL_CTL_ADD, 0, &sev);

  static char buf[1 << 16];
  static char cmd[256];
  int cmdlen = 0;
  int announced = 0;
  struct epoll_event evs[256];
  for (;;) {
    // Open connections in steps, letting each step's handshakes finish (the server's backlog).
    while (dispatched < count && pending < 64) {
      struct conn *c = &conns[dispatched];
      c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
      int one = 1;
      setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      if (c->fd < 0 || bind(c->fd, (struct sockaddr *)&from, sizeof from) != 0 ||
          (connect(c->fd, (struct sockaddr *)&to, sizeof to) != 0 && errno != EINPROGRESS)) {
        c->state = FAILED;
        err_connect++;
        failed++;
        dispatched++;
        continue;
      }
      c->state = CONNECTING;
      struct epoll_event ev = {.events = EPOLLOUT | EPOLLIN, .data.u64 = (uint64_t)dispatched};
      epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev);
      dispatched++;
      pending++;
    }
    if (!announced && dispatched == count) {
      printf("{\"op\":\"hold\"}\n");
      fflush(stdout);
      announced = 1;
    }
    int n = epoll_wait(ep, evs, 256, 100);
    for (int i = 0; i < n; i++) {
      if (evs[i].data.u64 == (uint64_t)-1) {
        long r = read(0, cmd + cmdlen, sizeof cmd - 1 - cmdlen);
        if (r == 0) return 0; // the parent went away
        if (r < 0) continue;
        cmdlen += r;
        char *nl;
        while ((nl = memchr(cmd, '\n', cmdlen))) {
          *nl = 0;
          if (strcmp(cmd, "stats") == 0) print_stats();
          else if (strcmp(cmd, "report") == 0) print_report();
          else if (strcmp(cmd, "close") == 0) {
            printf("{\"op\":\"close\"}\n");
            fflush(stdout);
            return 0;
          }
          long rest = cmdlen - (nl + 1 - cmd);
          memmove(cmd, nl + 1, rest);
          cmdlen = rest;
        }
        if (cmdlen >= (int)sizeof cmd - 1) cmdlen = 0;
        continue;
      }
      struct conn *c = &conns[evs[i].data.u64];
      if (c->state == CONNECTING && (evs[i].events & EPOLLOUT)) {
        int err = 0;
        socklen_t len = sizeof err;
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err || write(c->fd, request, request_len) != request_len) {
          fail(c, &err_connect, ep);
          continue;
        }
        pending--;
        connected++;
        c->state = SENT;
        struct epoll_event ev = {.events = EPOLLIN, .data.u64 = evs[i].data.u64};
        epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
        continue;
      }
      if (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
        for (;;) {
          long r = read(c->fd, buf, sizeof buf);
          if (r > 0) {
            consume(c, buf, r, ep);
            if (c->state == FINISHED || c->state == FAILED) break;
            continue;
          }
          if (r == 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) fail(c, &err_reset, ep);
          break;
        }
      }
    }
  }
}
