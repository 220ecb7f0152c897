/* Federated pieces: aggregators, differential privacy and a full SecAgg round driven
 * through byte buffers, as a C federation stack would. */
#include <stdint.h>
#include <stdlib.h>

#include "check.h"

static void fedavg_and_friends(void) {
    bfl_aggregator *agg = NULL;
    OK(bfl_aggregator_new(BFL_AGGREGATOR_KIND_FED_AVG, NULL, &agg));
    float global[2] = {0, 0};
    const float a[2] = {1, 1}, b[2] = {5, 1};
    OK(bfl_aggregator_add_update(agg, "a", 1, a, 2, false));
    OK(bfl_aggregator_add_update(agg, "b", 3, b, 2, false));
    size_t pending = 0;
    OK(bfl_aggregator_pending(agg, &pending));
    CHECK(pending == 2);
    /* out may be the global buffer itself */
    OK(bfl_aggregator_finish(agg, global, 2, global, 2));
    CHECK(global[0] == 4.0f && global[1] == 1.0f); /* (1*1 + 3*5) / 4 */
    OK(bfl_aggregator_pending(agg, &pending));
    CHECK(pending == 0);

    /* delta updates are added to the global weights */
    const float d1[2] = {1, -1}, d2[2] = {3, 1};
    OK(bfl_aggregator_add_update(agg, "a", 1, d1, 2, true));
    OK(bfl_aggregator_add_update(agg, "b", 1, d2, 2, true));
    float next[3] = {0, 0, -9};
    OK(bfl_aggregator_finish(agg, global, 2, next, 3));
    CHECK(next[0] == 6.0f && next[1] == 1.0f && next[2] == -9.0f);

    /* rejected updates name the client; out is untouched; pending updates are consumed */
    const float bad[2] = {NAN, 0};
    OK(bfl_aggregator_add_update(agg, "good", 1, a, 2, false));
    OK(bfl_aggregator_add_update(agg, "mallory", 1, bad, 2, false));
    float out[2] = {-1, -1};
    FAILS(BFL_STATUS_REJECTED_UPDATE, bfl_aggregator_finish(agg, global, 2, out, 2));
    char msg[512];
    bfl_last_error_message(msg, sizeof msg);
    CHECK(strstr(msg, "mallory") != NULL && out[0] == -1.0f);
    OK(bfl_aggregator_pending(agg, &pending));
    CHECK(pending == 0);
    const float longer[3] = {1, 2, 3};
    OK(bfl_aggregator_add_update(agg, "long", 1, longer, 3, false));
    FAILS(BFL_STATUS_REJECTED_UPDATE, bfl_aggregator_finish(agg, global, 2, out, 2));
    OK(bfl_aggregator_add_update(agg, "zero", 0, a, 2, false));
    FAILS(BFL_STATUS_REJECTED_UPDATE, bfl_aggregator_finish(agg, global, 2, out, 2));
    FAILS(BFL_STATUS_AGGREGATION, bfl_aggregator_finish(agg, global, 2, out, 2)); /* none */
    OK(bfl_aggregator_add_update(agg, "a", 1, a, 2, false));
    FAILS(BFL_STATUS_BUFFER_TOO_SMALL, bfl_aggregator_finish(agg, global, 2, out, 1));
    OK(bfl_aggregator_pending(agg, &pending));
    CHECK(pending == 1); /* a short buffer changes nothing */
    bfl_aggregator_free(agg); /* frees the pending update too */

    /* coordinate-wise median ignores one absurd client */
    OK(bfl_aggregator_new(BFL_AGGREGATOR_KIND_FED_MEDIAN, NULL, &agg));
    const float m1[2] = {1, 2}, m2[2] = {2, 3}, m3[2] = {1000, -1000};
    OK(bfl_aggregator_add_update(agg, "1", 1, m1, 2, false));
    OK(bfl_aggregator_add_update(agg, "2", 1, m2, 2, false));
    OK(bfl_aggregator_add_update(agg, "3", 1, m3, 2, false));
    OK(bfl_aggregator_finish(agg, global, 2, out, 2));
    CHECK(out[0] == 2.0f && out[1] == 2.0f);
    bfl_aggregator_free(agg);

    /* a norm bound from the config */
    bfl_aggregator_config cfg;
    OK(bfl_aggregator_config_default(&cfg));
    CHECK(cfg.max_delta_norm == 0.0 && cfg.trimmed_beta == 0.2 && cfg.proximal_mu == 0.01 &&
          cfg.eta == 0.1);
    cfg.max_delta_norm = 1.0;
    OK(bfl_aggregator_new(BFL_AGGREGATOR_KIND_FED_TRIMMED_AVG, &cfg, &agg));
    float zero[2] = {0, 0};
    OK(bfl_aggregator_add_update(agg, "far", 1, b, 2, false));
    FAILS(BFL_STATUS_REJECTED_UPDATE, bfl_aggregator_finish(agg, zero, 2, out, 2));
    bfl_aggregator_free(agg);
    cfg.trimmed_beta = 0.6;
    agg = (bfl_aggregator *)&agg;
    FAILS(BFL_STATUS_INVALID_CONFIG, bfl_aggregator_new(BFL_AGGREGATOR_KIND_FED_TRIMMED_AVG, &cfg, &agg));
    CHECK(agg == NULL);

    /* server optimizers keep state across rounds */
    OK(bfl_aggregator_new(BFL_AGGREGATOR_KIND_FED_ADAM, NULL, &agg));
    float w[2] = {0, 0};
    for (int round = 0; round < 3; round++) {
        OK(bfl_aggregator_add_update(agg, "a", 1, a, 2, false));
        OK(bfl_aggregator_finish(agg, w, 2, w, 2));
    }
    CHECK(w[0] > 0.1f && w[0] < 1.0f && w[0] == w[1]);
    bfl_aggregator_free(agg);
}

static double norm2(const float *x, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += (double)x[i] * x[i];
    return sqrt(s);
}

static void differential_privacy(void) {
    float u[2] = {3, 4};
    bfl_clip_outcome o;
    OK(bfl_dp_clip(u, 2, 1.0, &o));
    CHECK(o.clipped && o.norm == 5.0 && norm2(u, 2) <= 1.0 && u[0] > 0.59f);
    float small[2] = {0.3f, 0.4f};
    OK(bfl_dp_clip(small, 2, 1.0, &o));
    CHECK(!o.clipped && o.factor == 1.0 && small[0] == 0.3f && small[1] == 0.4f);
    float nan_buf[2] = {NAN, 1};
    FAILS(BFL_STATUS_PRIVACY, bfl_dp_clip(nan_buf, 2, 1.0, NULL));
    FAILS(BFL_STATUS_INVALID_CONFIG, bfl_dp_clip(small, 2, 0.0, NULL));

    enum { N = 20000 };
    float *x = calloc(N, sizeof *x), *y = calloc(N, sizeof *y), *z = calloc(N, sizeof *z);
    OK(bfl_dp_add_noise(x, N, 2.0, 7));
    OK(bfl_dp_add_noise(y, N, 2.0, 7));
    OK(bfl_dp_add_noise(z, N, 2.0, 8));
    CHECK(memcmp(x, y, N * sizeof *x) == 0);  /* reproducible from the seed */
    CHECK(memcmp(x, z, N * sizeof *x) != 0);
    CLOSE(norm2(x, N) / sqrt(N), 2.0, 0.05);  /* empirical std */
    OK(bfl_dp_add_noise_os(y, N, 2.0));
    CHECK(memcmp(x, y, N * sizeof *x) != 0);
    FAILS(BFL_STATUS_INVALID_CONFIG, bfl_dp_add_noise(x, N, -1.0, 7));
    free(x);
    free(y);
    free(z);

    double client = -1, server = -1;
    OK(bfl_dp_noise_std(BFL_DP_MODE_CENTRAL, 1.0, 2.0, 4, &client, &server));
    CHECK(client == 0.0 && server == 2.0);
    OK(bfl_dp_noise_std(BFL_DP_MODE_DISTRIBUTED, 1.0, 2.0, 4, &client, &server));
    CHECK(client == 1.0 && server == 0.0);
    FAILS(BFL_STATUS_INVALID_CONFIG, bfl_dp_noise_std(BFL_DP_MODE_LOCAL, 1.0, 2.0, 0, NULL, NULL));

    bfl_accountant *acc = NULL;
    OK(bfl_accountant_new_with_budget(8.0, 1e-5, &acc));
    double eps = -1, planned = -1;
    OK(bfl_accountant_epsilon_after(acc, 1.0, 1.0, 1, 1e-5, &planned));
    OK(bfl_accountant_step(acc, 1.0, 1.0, 1));
    OK(bfl_accountant_epsilon(acc, 1e-5, &eps));
    CLOSE(eps, 4.7285, 1e-3); /* Google dp-accounting agrees */
    CHECK(planned == eps);
    OK(bfl_accountant_step(acc, 1.0, 1.0, 1));
    FAILS(BFL_STATUS_BUDGET_EXHAUSTED, bfl_accountant_step(acc, 1.0, 1.0, 1));
    uint64_t steps = 0;
    OK(bfl_accountant_steps(acc, &steps));
    CHECK(steps == 2);
    FAILS(BFL_STATUS_INVALID_CONFIG, bfl_accountant_step(acc, -1.0, 1.0, 1));
    FAILS(BFL_STATUS_INVALID_CONFIG, bfl_accountant_epsilon(acc, 2.0, &eps));
    bfl_accountant_free(acc);
    FAILS(BFL_STATUS_INVALID_CONFIG, bfl_accountant_new_with_budget(-1.0, 1e-5, &acc));
    CHECK(acc == NULL);
}

enum { CLIENTS = 4, DIM = 5 };

typedef struct {
    bfl_secagg_client *c[CLIENTS];
    uint64_t ids[CLIENTS];
} clients_t;

static int index_of(const clients_t *cl, uint64_t id) {
    for (int i = 0; i < CLIENTS; i++)
        if (cl->ids[i] == id) return i;
    return -1;
}

static void fill_seed(uint8_t seed[32], int salt) {
    for (int j = 0; j < 32; j++) seed[j] = (uint8_t)(salt * 31 + j * 7 + 1);
}

/* Client reply to one server message; sends it to the server with `receive`. */
typedef bfl_status (*step_fn)(bfl_secagg_client *, const uint8_t *, size_t, bfl_bytes **);
typedef bfl_status (*receive_fn)(bfl_secagg_server *, uint64_t, const uint8_t *, size_t);

static void relay(bfl_message_batch *batch, clients_t *cl, step_fn step, bfl_secagg_server *server,
                  receive_fn receive, int skip) {
    size_t n = 0;
    OK(bfl_message_batch_len(batch, &n));
    for (size_t k = 0; k < n; k++) {
        uint64_t id;
        const uint8_t *data;
        size_t len;
        OK(bfl_message_batch_get(batch, k, &id, &data, &len));
        int i = index_of(cl, id);
        CHECK(i >= 0);
        if (i < 0 || i == skip) continue;
        bfl_bytes *reply = NULL;
        OK(step(cl->c[i], data, len, &reply));
        const uint8_t *rd;
        size_t rl;
        OK(bfl_bytes_data(reply, &rd, &rl));
        if (k == 0) /* a reply relayed in another client's name is refused */
            FAILS(BFL_STATUS_SECAGG, receive(server, id + 1000, rd, rl));
        OK(receive(server, id, rd, rl)); /* the sender the transport authenticated */
        bfl_bytes_free(reply);
    }
    uint64_t id;
    const uint8_t *data;
    size_t len;
    FAILS(BFL_STATUS_INVALID_ARGUMENT, bfl_message_batch_get(batch, n, &id, &data, &len));
    bfl_message_batch_free(batch);
}

/* One round; client `drop` (index) never sends its masked input. With `pki`, the
 * active-adversary mode (signed keys and a consistency check). */
static void secagg_round(int with_pki, int drop) {
    bfl_secagg_config cfg;
    OK(bfl_secagg_config_default(CLIENTS, &cfg));
    CHECK(cfg.neighbours == 0 && cfg.threshold == 0 && cfg.modulus_bits == 32);
    clients_t cl;
    float delta[CLIENTS][DIM];
    double weight[CLIENTS];
    for (int i = 0; i < CLIENTS; i++) {
        cl.ids[i] = 100 + (uint64_t)i;
        weight[i] = 10.0 * (i + 1);
        for (int d = 0; d < DIM; d++) delta[i][d] = 0.01f * (float)(i + 1) - 0.002f * (float)d;
    }
    bfl_secagg_pki *pki = NULL;
    uint8_t identity[CLIENTS][32];
    if (with_pki) {
        uint8_t keys[CLIENTS * 32];
        for (int i = 0; i < CLIENTS; i++) {
            fill_seed(identity[i], 50 + i);
            OK(bfl_secagg_identity_public_key(identity[i], 32, keys + 32 * i, 32));
        }
        OK(bfl_secagg_pki_new(cl.ids, keys, CLIENTS, &pki));
    }
    uint8_t seed[32];
    fill_seed(seed, 99);
    bfl_secagg_server *server = NULL;
    OK(bfl_secagg_server_new(&cfg, 1, DIM, cl.ids, CLIENTS, seed, 32, pki, &server));
    OK(bfl_secagg_server_set_run(server, 42)); /* a fresh run id per run */
    bfl_bytes *setup = NULL;
    OK(bfl_secagg_server_setup(server, &setup));
    const uint8_t *sd;
    size_t sl;
    OK(bfl_bytes_data(setup, &sd, &sl));
    for (int i = 0; i < CLIENTS; i++) {
        fill_seed(seed, i);
        OK(bfl_secagg_client_new(cl.ids[i], sd, sl, seed, 32, with_pki ? identity[i] : NULL, pki,
                                 &cl.c[i]));
    }
    /* a truncated Setup is refused */
    bfl_secagg_client *broken = NULL;
    FAILS(BFL_STATUS_SECAGG, bfl_secagg_client_new(7, sd, sl - 1, seed, 32, NULL, NULL, &broken));
    CHECK(broken == NULL);
    bfl_bytes_free(setup);
    bfl_secagg_pki_free(pki); /* clients and server keep their own copy */

    /* stage 0 */
    for (int i = 0; i < CLIENTS; i++) {
        bfl_bytes *keys = NULL;
        OK(bfl_secagg_client_advertise_keys(cl.c[i], &keys));
        const uint8_t *d;
        size_t l;
        OK(bfl_bytes_data(keys, &d, &l));
        if (i == 0) {
            /* a message for another stage, and a tampered one, are refused */
            FAILS(BFL_STATUS_SECAGG, bfl_secagg_server_receive_shares(server, cl.ids[i], d, l));
            uint8_t *t = malloc(l);
            memcpy(t, d, l);
            t[0] ^= 0xff;
            FAILS(BFL_STATUS_SECAGG, bfl_secagg_server_receive_keys(server, cl.ids[i], t, l));
            FAILS(BFL_STATUS_SECAGG, bfl_secagg_server_receive_keys(server, cl.ids[i], t, l / 2));
            free(t);
            /* client 1 sending client 0's keys is refused */
            FAILS(BFL_STATUS_SECAGG, bfl_secagg_server_receive_keys(server, cl.ids[1], d, l));
        }
        OK(bfl_secagg_server_receive_keys(server, cl.ids[i], d, l));
        if (i == 0) /* dup */
            FAILS(BFL_STATUS_SECAGG, bfl_secagg_server_receive_keys(server, cl.ids[i], d, l));
        bfl_bytes_free(keys);
    }
    bfl_message_batch *batch = NULL;
    OK(bfl_secagg_server_finish_advertise(server, &batch));
    FAILS(BFL_STATUS_SECAGG, bfl_secagg_server_set_run(server, 43)); /* too late */
    relay(batch, &cl, bfl_secagg_client_share_keys, server, bfl_secagg_server_receive_shares, -1);
    OK(bfl_secagg_server_finish_share_keys(server, &batch));

    /* stage 2: masked inputs (not through relay: they carry the deltas) */
    size_t n = 0;
    OK(bfl_message_batch_len(batch, &n));
    CHECK(n == CLIENTS);
    for (size_t k = 0; k < n; k++) {
        uint64_t id;
        const uint8_t *d;
        size_t l;
        OK(bfl_message_batch_get(batch, k, &id, &d, &l));
        int i = index_of(&cl, id);
        if (i < 0 || i == drop) continue;
        bfl_bytes *masked = NULL;
        FAILS(BFL_STATUS_SHAPE, bfl_secagg_client_masked_input(cl.c[i], d, l, delta[i], DIM - 1,
                                                              weight[i], &masked));
        OK(bfl_secagg_client_masked_input(cl.c[i], d, l, delta[i], DIM, weight[i], &masked));
        const uint8_t *md;
        size_t ml;
        OK(bfl_bytes_data(masked, &md, &ml));
        OK(bfl_secagg_server_receive_masked_input(server, id, md, ml));
        bfl_bytes_free(masked);
    }
    bfl_message_batch_free(batch);

    if (with_pki) {
        FAILS(BFL_STATUS_SECAGG, bfl_secagg_server_finish_masked_input(server, &batch));
        OK(bfl_secagg_server_start_consistency_check(server, &batch));
        relay(batch, &cl, bfl_secagg_client_consistency_check, server,
              bfl_secagg_server_receive_consistency, drop);
        OK(bfl_secagg_server_finish_consistency_check(server, &batch));
    } else {
        OK(bfl_secagg_server_finish_masked_input(server, &batch));
    }
    relay(batch, &cl, bfl_secagg_client_unmask, server, bfl_secagg_server_receive_unmask, drop);

    uint64_t survivors[CLIENTS];
    size_t ns = 0;
    OK(bfl_secagg_server_survivors(server, survivors, CLIENTS, &ns));
    CHECK(ns == (drop >= 0 ? CLIENTS - 1 : CLIENTS));
    FAILS(BFL_STATUS_BUFFER_TOO_SMALL, bfl_secagg_server_survivors(server, survivors, 1, &ns));

    float mean[DIM];
    double total = 0;
    size_t nsurv = 0;
    FAILS(BFL_STATUS_BUFFER_TOO_SMALL, bfl_secagg_server_finish(server, mean, DIM - 1, NULL, NULL));
    OK(bfl_secagg_server_finish(server, mean, DIM, &total, &nsurv));
    double wsum = 0;
    for (int i = 0; i < CLIENTS; i++)
        if (i != drop) wsum += weight[i];
    CLOSE(total, wsum, 1e-2);
    CHECK(nsurv == ns);
    for (int d = 0; d < DIM; d++) {
        double expect = 0;
        for (int i = 0; i < CLIENTS; i++)
            if (i != drop) expect += weight[i] * delta[i][d];
        CLOSE(mean[d], expect / wsum, 1e-4);
    }
    FAILS(BFL_STATUS_SECAGG, bfl_secagg_server_finish(server, mean, DIM, NULL, NULL)); /* done */

    for (int i = 0; i < CLIENTS; i++) bfl_secagg_client_free(cl.c[i]);
    bfl_secagg_server_free(server);
}

int main(void) {
    fedavg_and_friends();
    differential_privacy();
    secagg_round(0, -1);
    secagg_round(0, 3);
    secagg_round(1, 2);
    return report("test_fl");
}
