/* A tight TCP connect loop for Scripts/bench-connect: N connects (and closes) to a listener on
 * 127.0.0.1 that a child process accepts; prints the wall time of the connects, then the CPU time
 * (user + system) of the connecting process and of the accepting child, in seconds. The connecting
 * process's CPU time is what the kernel's work in its context costs, apart from other processes
 * competing for the cores. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double cpu(const struct rusage *u)
{
    return u->ru_utime.tv_sec + u->ru_stime.tv_sec + (u->ru_utime.tv_usec + u->ru_stime.tv_usec) / 1e6;
}

int main(int argc, char **argv)
{
    int n = argc > 1 ? atoi(argv[1]) : 20000;
    int l = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    if (bind(l, (struct sockaddr *)&a, sizeof a) || listen(l, 4096) || getsockname(l, (struct sockaddr *)&a, &len)) {
        perror("listen");
        return 1;
    }
    pid_t child = fork();
    if (child == 0) {
        for (;;) {
            int c = accept(l, NULL, NULL);
            if (c >= 0)
                close(c);
        }
    }
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int i = 0; i < n; i++) {
        int s = socket(AF_INET, SOCK_STREAM, 0);
        /* RST on close, so TIME_WAIT does not run out of ports. */
        struct linger lg = {1, 0};
        setsockopt(s, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
        if (connect(s, (struct sockaddr *)&a, sizeof a)) {
            perror("connect");
            return 1;
        }
        close(s);
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    struct rusage self, children;
    getrusage(RUSAGE_SELF, &self);
    kill(child, SIGKILL);
    waitpid(child, NULL, 0);
    getrusage(RUSAGE_CHILDREN, &children);
    printf("%.4f %.4f %.4f\n", (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9, cpu(&self), cpu(&children));
    return 0;
}
