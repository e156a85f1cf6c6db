/*
 * test_place.c: gang placement: packing onto the fewest nodes, device
 * constraints, gpus_per_node and nodes, deterministic rank order, all or
 * nothing, and no device ever given twice over many random jobs.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../lib/check.h"
#include "place.h"

static view_node_t nodes[16];
static int nnodes;

static void add_node(const char *name, int ndev, const char *model, const char *kind, int64_t mem)
{
    view_node_t *n = &nodes[nnodes++];

    memset(n, 0, sizeof(*n));
    snprintf(n->name, sizeof(n->name), "%s", name);
    n->ready = n->connected = true;
    n->ndevs = ndev;
    for (int i = 0; i < ndev; i++) {
        n->devs[i].index = i;
        snprintf(n->devs[i].uuid, sizeof(n->devs[i].uuid), "%s-%d", name, i);
        snprintf(n->devs[i].model, sizeof(n->devs[i].model), "%s", model);
        snprintf(n->devs[i].kind, sizeof(n->devs[i].kind), "%s", kind);
        n->devs[i].memory_mb = mem;
    }
}

static place_req_t req(int gpus, int gpn, int nn)
{
    place_req_t r = {gpus, gpn, nn, FT_DEV_ANY, "", 0};
    return r;
}

/* "n1:0,n1:1,..." for the placement. */
static const char *show(const place_slot_t *s, int n)
{
    static char buf[4096];
    size_t len = 0;

    buf[0] = '\0';
    for (int i = 0; i < n && len < sizeof(buf) - 32; i++)
        len += (size_t)snprintf(buf + len, sizeof(buf) - len, "%s%s:%d", i ? "," : "",
                                nodes[s[i].node].name, nodes[s[i].node].devs[s[i].dev].index);
    return buf;
}

static void test_packing(void)
{
    place_slot_t s[64];
    place_req_t r;

    nnodes = 0;
    add_node("a", 8, "H100", "gpu", 81920);
    add_node("b", 4, "H100", "gpu", 81920);
    add_node("c", 2, "H100", "gpu", 81920);

    r = req(2, 0, 0);
    CHECK(place_find(nodes, nnodes, &r, PLACE_NOW, s) == 0 && strcmp(show(s, 2), "c:0,c:1") == 0,
          "2 gpus go to the smallest node that holds them (best fit): %s", show(s, 2));
    r = req(4, 0, 0);
    CHECK(place_find(nodes, nnodes, &r, PLACE_NOW, s) == 0 &&
              strcmp(show(s, 4), "b:0,b:1,b:2,b:3") == 0,
          "4 gpus fit on b: %s", show(s, 4));
    r = req(10, 0, 0);
    CHECK(place_find(nodes, nnodes, &r, PLACE_NOW, s) == 0 &&
              strcmp(show(s, 10), "a:0,a:1,a:2,a:3,a:4,a:5,a:6,a:7,b:0,b:1") == 0,
          "10 gpus take the largest nodes first, ranks in node-name order: %s", show(s, 10));
    r = req(14, 0, 0);
    CHECK(place_find(nodes, nnodes, &r, PLACE_NOW, s) == 0, "14 gpus use every node");
    r = req(15, 0, 0);
    CHECK(place_find(nodes, nnodes, &r, PLACE_NOW, s) < 0, "15 gpus do not fit 14");

    r = req(4, 2, 0);
    CHECK(place_find(nodes, nnodes, &r, PLACE_NOW, s) == 0 &&
              strcmp(show(s, 4), "b:0,b:1,c:0,c:1") == 0,
          "gpus_per_node 2 picks the two best-fitting nodes: %s", show(s, 4));
    r = req(6, 2, 0);
    CHECK(place_find(nodes, nnodes, &r, PLACE_NOW, s) == 0 &&
              strcmp(show(s, 6), "a:0,a:1,b:0,b:1,c:0,c:1") == 0,
          "gpus_per_node 2 on three nodes: %s", show(s, 6));
    r = req(8, 4, 0);
    CHECK(place_find(nodes, nnodes, &r, PLACE_NOW, s) == 0 &&
              strcmp(show(s, 8), "a:0,a:1,a:2,a:3,b:0,b:1,b:2,b:3") == 0,
          "gpus_per_node 4: %s", show(s, 8));
    r = req(12, 4, 0);
    CHECK(place_find(nodes, nnodes, &r, PLACE_NOW, s) < 0,
          "gpus_per_node 4 x 3 nodes: c has only 2");
    r = req(3, 0, 3);
    CHECK(place_find(nodes, nnodes, &r, PLACE_NOW, s) == 0 &&
              strcmp(show(s, 3), "a:0,b:0,c:0") == 0,
          "nodes 3 spreads one per node: %s", show(s, 3));
    r = req(4, 0, 2);
    CHECK(place_find(nodes, nnodes, &r, PLACE_NOW, s) == 0 &&
              strcmp(show(s, 4), "a:0,a:1,a:2,b:0") == 0,
          "nodes 2 uses the two largest: %s", show(s, 4));
    r = req(2, 0, 4);
    CHECK(place_find(nodes, nnodes, &r, PLACE_NOW, s) < 0, "nodes 4 with 3 nodes does not fit");

    /* Busy devices are skipped; "hypothetical" ignores them. */
    for (int i = 0; i < 8; i++)
        nodes[0].devs[i].job_id = 7;
    r = req(8, 0, 0);
    CHECK(place_find(nodes, nnodes, &r, PLACE_NOW, s) < 0, "8 gpus do not fit while a is busy");
    CHECK(place_find(nodes, nnodes, &r, PLACE_EVER, s) == 0, "but could fit some day (PLACE_EVER)");
    CHECK(place_find(nodes, nnodes, &r, PLACE_DRAINED, s) == 0,
          "and fits once the running jobs end (PLACE_DRAINED)");
    nodes[1].connected = false;
    r = req(2, 0, 0);
    CHECK(place_find(nodes, nnodes, &r, PLACE_NOW, s) == 0 && nodes[s[0].node].name[0] == 'c',
          "a disconnected node is not used: %s", show(s, 2));
    r = req(4, 0, 0);
    CHECK(place_find(nodes, nnodes, &r, PLACE_NOW, s) < 0, "4 gpus do not fit without a and b");
    r = req(8, 0, 0);
    CHECK(place_find(nodes, nnodes, &r, PLACE_DRAINED, s) == 0,
          "8 gpus fit on a once drained (b is disconnected)");
    r = req(11, 0, 0);
    CHECK(place_find(nodes, nnodes, &r, PLACE_DRAINED, s) < 0 &&
              place_find(nodes, nnodes, &r, PLACE_EVER, s) == 0,
          "11 gpus need the disconnected b: not even drained, but some day");
}

static void test_constraints(void)
{
    place_slot_t s[16];
    place_req_t r;

    nnodes = 0;
    /* The view keeps nodes in name order; so does this array. */
    add_node("cpu1", 2, "cpu", "cpu", 16384);
    add_node("e1", 2, "emulated-80G", "emulated", 81920);
    add_node("g1", 2, "NVIDIA A100-SXM4-40GB", "gpu", 40960);
    add_node("g2", 2, "NVIDIA H100 80GB HBM3", "gpu", 81920);

    r = req(2, 0, 0);
    r.device = FT_DEV_CPU;
    CHECK(place_find(nodes, nnodes, &r, PLACE_NOW, s) == 0 &&
              strcmp(show(s, 2), "cpu1:0,cpu1:1") == 0,
          "device cpu lands on CPU devices: %s", show(s, 2));
    r.device = FT_DEV_GPU;
    r.gpu_model = "h100";
    CHECK(place_find(nodes, nnodes, &r, PLACE_NOW, s) == 0 && strcmp(show(s, 2), "g2:0,g2:1") == 0,
          "gpu_model 'h100' matches case-insensitively: %s", show(s, 2));
    r.gpu_model = "";
    r.gpu_mem_mb = 80 * 1024;
    CHECK(place_find(nodes, nnodes, &r, PLACE_NOW, s) == 0 && strcmp(show(s, 2), "e1:0,e1:1") == 0,
          "gpu_mem_gb 80 excludes the A100 40GB and counts emulated GPUs: %s", show(s, 2));
    r.gpus = 4;
    CHECK(place_find(nodes, nnodes, &r, PLACE_NOW, s) == 0 &&
              strcmp(show(s, 4), "e1:0,e1:1,g2:0,g2:1") == 0,
          "4 x 80 GB GPUs over e1 and g2: %s", show(s, 4));
    r.gpus = 5;
    CHECK(place_find(nodes, nnodes, &r, PLACE_NOW, s) < 0, "5 x 80 GB GPUs do not exist");
    r = req(1, 0, 0);
    r.device = FT_DEV_GPU;
    r.gpu_model = "TPU";
    CHECK(place_find(nodes, nnodes, &r, PLACE_EVER, s) < 0, "no TPU even hypothetically");
}

/* Many random jobs arriving and leaving: never two on one device, every
 * placement all-or-nothing and deterministic. */
static void test_random(void)
{
    place_slot_t s[64], s2[64];
    int64_t next_id = 1;
    int placed = 0, refused = 0, double_alloc = 0, partial = 0, nondet = 0;
    unsigned seed = 12345;

    nnodes = 0;
    add_node("n01", 8, "H100", "gpu", 81920);
    add_node("n02", 8, "H100", "gpu", 81920);
    add_node("n03", 4, "A100", "gpu", 40960);
    add_node("n04", 4, "A100", "gpu", 40960);
    add_node("n05", 2, "cpu", "cpu", 8192);
    for (int iter = 0; iter < 20000; iter++) {
        place_req_t r = req(1 + (int)(rand_r(&seed) % 12), 0, 0);
        int mode = (int)(rand_r(&seed) % 4);

        if (mode == 1)
            r.gpus_per_node = 1 + (int)(rand_r(&seed) % 4),
            r.gpus = r.gpus_per_node * (1 + (int)(rand_r(&seed) % 3));
        else if (mode == 2)
            r.nodes = 1 + (int)(rand_r(&seed) % 3), r.gpus = r.gpus < r.nodes ? r.nodes : r.gpus;
        if (rand_r(&seed) % 5 == 0)
            r.gpu_model = "H100";
        /* Free a random job now and then. */
        if (rand_r(&seed) % 2 == 0 && next_id > 1) {
            int64_t lo = next_id > 8 ? next_id - 8 : 1;
            int64_t victim = lo + (int64_t)(rand_r(&seed) % (unsigned)(next_id - lo));
            for (int i = 0; i < nnodes; i++)
                for (int k = 0; k < nodes[i].ndevs; k++)
                    if (nodes[i].devs[k].job_id == victim)
                        nodes[i].devs[k].job_id = 0;
        }
        if (place_find(nodes, nnodes, &r, PLACE_NOW, s) == 0) {
            if (place_find(nodes, nnodes, &r, PLACE_NOW, s2) != 0 ||
                memcmp(s, s2, sizeof(s[0]) * (size_t)r.gpus) != 0)
                nondet++;
            for (int i = 0; i < r.gpus; i++) {
                view_dev_t *d = &nodes[s[i].node].devs[s[i].dev];
                if (d->job_id != 0 || !place_dev_matches(d, &r))
                    double_alloc++;
                d->job_id = next_id;
            }
            if (r.gpus_per_node > 0) {
                for (int i = 0; i < r.gpus; i++) {
                    int on = 0;
                    for (int k = 0; k < r.gpus; k++)
                        on += s[k].node == s[i].node;
                    if (on != r.gpus_per_node)
                        partial++;
                }
            }
            next_id++;
            placed++;
        } else {
            refused++;
        }
    }
    CHECK(placed > 1000 && refused > 100,
          "random workload exercised both outcomes (%d placed, %d refused)", placed, refused);
    CHECK(double_alloc == 0, "no device given twice or against its constraints (%d)", double_alloc);
    CHECK(partial == 0, "gpus_per_node always honoured (%d violations)", partial);
    CHECK(nondet == 0, "the same view gives the same placement (%d differences)", nondet);
}

int main(void)
{
    test_packing();
    test_constraints();
    test_random();
    return check_done("test_place");
}
