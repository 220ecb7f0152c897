/* Cells (built from arrays, loaded from the shared real data, parsed from bytes),
 * the featurizer and genome fingerprints. Usage: test_data <real-data-dir> */
#include <dirent.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>

#include "check.h"

static char path_buf[4096];

static const char *data_path(const char *dir, const char *rel) {
    snprintf(path_buf, sizeof path_buf, "%s/%s", dir, rel);
    return path_buf;
}

/* One cycle: charge 0 -> 1 Ah at 0.5 A while V rises 3.0 -> 4.0 V, then discharge. */
static bfl_cell *demo_cell(const char *id, double nominal) {
    enum { N = 11 };
    double v[2 * N], i[2 * N], qc[2 * N], qd[2 * N];
    for (int k = 0; k < N; k++) {
        v[k] = 3.0 + k / 10.0;
        v[N + k] = 4.0 - k / 10.0;
        i[k] = 0.5;
        i[N + k] = -1.0;
        qc[k] = k / 10.0;
        qc[N + k] = 1.0;
        qd[k] = 0.0;
        qd[N + k] = k / 10.0;
    }
    bfl_cell_meta meta = {
        .cell_id = id, .nominal_capacity_ah = nominal, .cathode = "LFP",
        .voltage_min_v = NAN, .voltage_max_v = NAN, .temperature_c = 25.0,
    };
    bfl_cell *cell = NULL;
    OK(bfl_cell_new(&meta, &cell));
    bfl_cycle_data cycle = {
        .cycle = 1, .len = 2 * N, .voltage_v = v, .current_a = i,
        .charge_capacity_ah = qc, .discharge_capacity_ah = qd,
    };
    OK(bfl_cell_add_cycle(cell, &cycle));
    return cell;
}

static void cell_from_arrays_featurizes(void) {
    bfl_cell *cell = demo_cell("demo", 1.0);
    OK(bfl_cell_validate(cell));
    size_t n = 0;
    OK(bfl_cell_num_cycles(cell, &n));
    CHECK(n == 1);

    char id[16];
    size_t written = 0;
    OK(bfl_cell_id(cell, id, sizeof id, &written));
    CHECK(written == 4 && strcmp(id, "demo") == 0);
    FAILS(BFL_STATUS_BUFFER_TOO_SMALL, bfl_cell_id(cell, id, 4, &written));
    CHECK(written == 5);
    FAILS(BFL_STATUS_BUFFER_TOO_SMALL, bfl_cell_id(cell, NULL, 0, &written));

    /* no label: censored data give 0, a set label is returned */
    uint32_t life = 99;
    OK(bfl_cell_cycle_life(cell, &life));
    CHECK(life == 0);
    OK(bfl_cell_set_cycle_life(cell, 640));
    OK(bfl_cell_cycle_life(cell, &life));
    CHECK(life == 640);

    bfl_featurizer_config cfg;
    OK(bfl_featurizer_config_default(&cfg));
    CHECK(cfg.cycles == 100 && cfg.interp_dim == 1000 && cfg.first_cycle == 1);
    CHECK(cfg.q_max == 1.2 && cfg.fill_missing_cycles && cfg.clean_edge_points == 50);
    cfg.cycles = 2;
    cfg.interp_dim = 13;
    bfl_featurizer *f = NULL;
    OK(bfl_featurizer_new(&cfg, &f));
    bfl_featurizer_config back;
    OK(bfl_featurizer_get_config(f, &back));
    CHECK(back.cycles == 2 && back.interp_dim == 13 && back.diff_base_cycle == 10);
    size_t len = 0, shape[3] = {0};
    OK(bfl_featurizer_output_len(f, &len));
    OK(bfl_featurizer_output_shape(f, shape));
    CHECK(len == 6 * 2 * 13 && shape[0] == 6 && shape[1] == 2 && shape[2] == 13);

    float x[6 * 2 * 13 + 5];
    for (size_t k = 0; k < sizeof x / sizeof x[0]; k++) x[k] = -7.0f;
    FAILS(BFL_STATUS_BUFFER_TOO_SMALL, bfl_featurizer_transform(f, cell, x, len - 1, &written));
    CHECK(x[0] == -7.0f); /* untouched */
    OK(bfl_featurizer_transform(f, cell, x, sizeof x / sizeof x[0], &written));
    CHECK(written == len);
    CHECK(x[len] == -7.0f); /* exactly len floats written */
#define AT(c, r, p) x[((c) * 2 + (r)) * 13 + (p)]
    CLOSE(AT(0, 0, 5), 3.5, 1e-6);  /* grid point 5 is Q = 0.5: charge voltage 3.5 V */
    CLOSE(AT(1, 0, 5), 3.5, 1e-6);  /* discharge voltage 3.5 V */
    CHECK(AT(0, 0, 12) == 4.0f);    /* beyond Q = 1.0 the charge curve holds its max */
    CHECK(memcmp(&AT(1, 1, 0), &AT(1, 0, 0), 13 * sizeof(float)) == 0); /* cycle 2 copies 1 */
#undef AT

    /* bad data name the cell */
    bfl_cell *bad = demo_cell("broken", -1.0);
    FAILS(BFL_STATUS_INVALID_DATA, bfl_cell_validate(bad));
    FAILS(BFL_STATUS_INVALID_DATA, bfl_featurizer_transform(f, bad, x, len, NULL));
    char msg[512];
    bfl_last_error_message(msg, sizeof msg);
    CHECK(strstr(msg, "broken") != NULL);
    /* a cycle whose voltage is missing */
    bfl_cycle_data no_v = {.cycle = 2, .len = 3};
    FAILS(BFL_STATUS_NULL_ARGUMENT, bfl_cell_add_cycle(bad, &no_v));
    bfl_cell_free(bad);

    /* invalid configs name the field */
    cfg.interp_dim = 1;
    bfl_featurizer *f2 = NULL;
    FAILS(BFL_STATUS_INVALID_CONFIG, bfl_featurizer_new(&cfg, &f2));
    bfl_last_error_message(msg, sizeof msg);
    CHECK(strstr(msg, "interp_dim") != NULL && f2 == NULL);

    bfl_featurizer_free(f);
    bfl_cell_free(cell);
}

static int by_name(const void *a, const void *b) { return strcmp(a, b); }

/* The linear model on real MATR cells: fit on half, 90 % intervals for the other half
 * calibrated on the training half, and typed errors for bad calls. */
static void linear_model_predicts_with_intervals(const char *dir) {
    enum { MAX = 48 };
    const bfl_cell *train[MAX], *test[MAX];
    bfl_cell *owned[2 * MAX];
    size_t n_train = 0, n_test = 0, n_owned = 0;
    DIR *d = opendir(data_path(dir, "matr_severson_qv"));
    CHECK(d != NULL);
    if (!d) return;
    struct dirent *e;
    char names[2 * MAX][256];
    size_t n_names = 0;
    while ((e = readdir(d)) != NULL && n_names < 2 * MAX) {
        if (strstr(e->d_name, ".json.gz") == NULL) continue;
        snprintf(names[n_names++], sizeof names[0], "%s", e->d_name);
    }
    closedir(d);
    qsort(names, n_names, sizeof names[0], by_name);
    for (size_t k = 0; k < n_names; k++) {
        char rel[300];
        snprintf(rel, sizeof rel, "matr_severson_qv/%s", names[k]);
        bfl_cell *cell = NULL;
        OK(bfl_cell_load_json(data_path(dir, rel), &cell));
        if (!cell) continue;
        uint32_t life = 0;
        OK(bfl_cell_cycle_life(cell, &life));
        owned[n_owned++] = cell;
        if (life < 200) continue; /* the 148-cycle outlier */
        if (k % 2 == 0) train[n_train++] = cell;
        else test[n_test++] = cell;
    }
    CHECK(n_train >= 30 && n_test >= 30);

    bfl_linear_model *model = NULL;
    OK(bfl_linear_model_fit(train, n_train, &model));
    double life[MAX], lower[MAX], upper[MAX];
    uint8_t ood[MAX];
    size_t written = 0;
    OK(bfl_linear_model_predict(model, test, n_test, train, n_train, 0.9, life, lower, upper,
                                ood, MAX, &written));
    CHECK(written == n_test);
    size_t covered = 0;
    for (size_t k = 0; k < n_test; k++) {
        uint32_t truth = 0;
        OK(bfl_cell_cycle_life(test[k], &truth));
        CHECK(lower[k] <= life[k] && life[k] <= upper[k] && life[k] > 100.0);
        covered += lower[k] <= truth && truth <= upper[k];
    }
    /* about 90 % of held-out cells of the same batches (the Rust tests pin this down) */
    CHECK(covered * 10 >= n_test * 7);

    /* typed errors: a coverage outside (0, 1), a short output, too few calibration cells,
     * NULL, fitting on no cells */
    FAILS(BFL_STATUS_INVALID_CONFIG,
          bfl_linear_model_predict(model, test, n_test, train, n_train, 1.5, life, lower, upper,
                                   ood, MAX, NULL));
    FAILS(BFL_STATUS_BUFFER_TOO_SMALL,
          bfl_linear_model_predict(model, test, n_test, train, n_train, 0.9, life, lower, upper,
                                   ood, 2, NULL));
    FAILS(BFL_STATUS_NOT_ENOUGH_DATA,
          bfl_linear_model_predict(model, test, n_test, train, 5, 0.9, life, lower, upper, ood,
                                   MAX, NULL));
    FAILS(BFL_STATUS_NULL_ARGUMENT,
          bfl_linear_model_predict(NULL, test, n_test, train, n_train, 0.9, life, lower, upper,
                                   ood, MAX, NULL));
    bfl_linear_model *none = NULL;
    FAILS(BFL_STATUS_NOT_ENOUGH_DATA, bfl_linear_model_fit(NULL, 0, &none));
    CHECK(none == NULL);

    bfl_linear_model_free(model);
    bfl_linear_model_free(NULL);
    for (size_t k = 0; k < n_owned; k++) bfl_cell_free(owned[k]);
}

static void real_cells_load_and_featurize(const char *dir) {
    bfl_cell *calce = NULL, *calce2 = NULL, *matr = NULL;
    OK(bfl_cell_load_json(data_path(dir, "calce_cs2/CALCE_CS2_35.json.gz"), &calce));
    OK(bfl_cell_load_json(data_path(dir, "calce_cs2/CALCE_CS2_36.json.gz"), &calce2));
    OK(bfl_cell_load_json(data_path(dir, "matr_severson_qv/MATR_2017-05-12_EL150800463886.json.gz"), &matr));
    if (!calce || !calce2 || !matr) return;
    size_t dropped = 0, n = 0;
    OK(bfl_cell_clean(calce, &dropped));
    OK(bfl_cell_clean(matr, NULL));
    OK(bfl_cell_validate(calce));
    OK(bfl_cell_validate(matr));
    OK(bfl_cell_num_cycles(calce, &n));
    CHECK(n >= 90 && n <= 100);
    uint32_t life = 0;
    OK(bfl_cell_cycle_life(calce, &life));
    CHECK(life >= 535 && life <= 667);
    OK(bfl_cell_cycle_life(matr, &life));
    CHECK(life == 636);

    /* full-signal CALCE cell with the default featurizer: every channel has data */
    bfl_featurizer *f = NULL;
    OK(bfl_featurizer_new_default(&f));
    size_t len = 0;
    OK(bfl_featurizer_output_len(f, &len));
    CHECK(len == 6 * 100 * 1000);
    float *x = malloc(len * sizeof *x);
    OK(bfl_featurizer_transform(f, calce, x, len, NULL));
    for (int c = 0; c < 6; c++) {
        size_t nonzero = 0;
        for (size_t k = 0; k < 100 * 1000; k++) nonzero += x[c * 100 * 1000 + k] != 0.0f;
        CHECK(nonzero > 1000);
    }
    free(x);
    bfl_featurizer_free(f);

    /* discharge-only MATR cell: V(Qd) only, every other channel exactly 0 */
    bfl_featurizer_config cfg;
    OK(bfl_featurizer_config_default(&cfg));
    cfg.first_cycle = 2;
    cfg.cycles = 99;
    cfg.interp_dim = 100;
    OK(bfl_featurizer_new(&cfg, &f));
    OK(bfl_featurizer_output_len(f, &len));
    x = malloc(len * sizeof *x);
    OK(bfl_featurizer_transform(f, matr, x, len, NULL));
    size_t per = 99 * 100, nz[6] = {0};
    for (int c = 0; c < 6; c++)
        for (size_t k = 0; k < per; k++) nz[c] += x[c * per + k] != 0.0f;
    CHECK(nz[1] > per / 2 && nz[0] == 0 && nz[2] == 0 && nz[3] == 0 && nz[4] == 0 && nz[5] == 0);
    free(x);
    bfl_featurizer_free(f);

    /* genome fingerprints: zero self-distance, symmetric, like is nearer than unlike */
    bfl_genome *ga = NULL, *gb = NULL, *gm = NULL;
    OK(bfl_genome_from_cell(calce, &ga));
    OK(bfl_genome_from_cell(calce2, &gb));
    OK(bfl_genome_from_cell(matr, &gm));
    double aa = -1, ab = -1, ba = -1, am = -1;
    OK(bfl_genome_distance(ga, ga, &aa));
    OK(bfl_genome_distance(ga, gb, &ab));
    OK(bfl_genome_distance(gb, ga, &ba));
    OK(bfl_genome_distance(ga, gm, &am));
    CHECK(aa == 0.0 && ab == ba && ab > 0.0 && am > ab);
    bfl_genome_free(ga);
    bfl_genome_free(gb);
    bfl_genome_free(gm);

    bfl_cell_free(calce);
    bfl_cell_free(calce2);
    bfl_cell_free(matr);
}

static void cells_parse_from_bytes(void) {
    const char *json =
        "{\"cell_id\": \"mini\", \"nominal_capacity_ah\": 1.1, \"cycle_life\": 500,"
        " \"cycles\": [{\"cycle\": 1, \"voltage_v\": [3.6, 3.0, 2.0],"
        " \"discharge_capacity_ah\": [0.0, 0.5, 1.0]}]}";
    bfl_cell *cell = NULL;
    OK(bfl_cell_parse_json((const uint8_t *)json, strlen(json), &cell));
    uint32_t life = 0;
    OK(bfl_cell_cycle_life(cell, &life));
    CHECK(life == 500);
    bfl_cell_free(cell);

    const char *garbage = "{\"cell_id\": 3";
    cell = (bfl_cell *)&cell;
    FAILS(BFL_STATUS_PARSE, bfl_cell_parse_json((const uint8_t *)garbage, strlen(garbage), &cell));
    CHECK(cell == NULL);
    const uint8_t fake_gzip[] = {0x1f, 0x8b, 0x08, 0x00, 0x01, 0x02};
    FAILS(BFL_STATUS_IO, bfl_cell_parse_json(fake_gzip, sizeof fake_gzip, &cell));
    FAILS(BFL_STATUS_PARSE, bfl_cell_parse_json(NULL, 0, &cell));
    FAILS(BFL_STATUS_IO, bfl_cell_load_json("/nonexistent/cell.json", &cell));
    CHECK(cell == NULL);
}

typedef struct {
    const bfl_featurizer *f;
    const bfl_cell *cell;
    const bfl_genome *g;
    float *out;
    size_t len;
    double distance;
    int failures;
} job_t;

static void *featurize_job(void *arg) {
    job_t *job = arg;
    for (int k = 0; k < 5; k++) {
        job->failures += bfl_featurizer_transform(job->f, job->cell, job->out, job->len, NULL) != BFL_STATUS_OK;
        job->failures += bfl_genome_distance(job->g, job->g, &job->distance) != BFL_STATUS_OK;
    }
    /* errors are per thread: this one must not show up in another thread's message */
    job->failures += bfl_featurizer_transform(job->f, job->cell, job->out, 1, NULL) != BFL_STATUS_BUFFER_TOO_SMALL;
    return NULL;
}

/* Featurizers, cells and fingerprints are shared read-only between threads. */
static void shared_handles_across_threads(const char *dir) {
    bfl_cell *cell = NULL;
    OK(bfl_cell_load_json(data_path(dir, "calce_cs2/CALCE_CS2_37.json.gz"), &cell));
    if (!cell) return;
    bfl_featurizer_config cfg;
    OK(bfl_featurizer_config_default(&cfg));
    cfg.interp_dim = 200;
    bfl_featurizer *f = NULL;
    bfl_genome *g = NULL;
    OK(bfl_featurizer_new(&cfg, &f));
    OK(bfl_genome_from_cell(cell, &g));
    size_t len = 0;
    OK(bfl_featurizer_output_len(f, &len));
    float *serial = malloc(len * sizeof *serial);
    OK(bfl_featurizer_transform(f, cell, serial, len, NULL));
    enum { T = 4 };
    pthread_t threads[T];
    job_t jobs[T];
    for (int t = 0; t < T; t++) {
        jobs[t] = (job_t){.f = f, .cell = cell, .g = g, .len = len, .distance = -1};
        jobs[t].out = malloc(len * sizeof(float));
        CHECK(pthread_create(&threads[t], NULL, featurize_job, &jobs[t]) == 0);
    }
    char before[512];
    bfl_last_error_message(before, sizeof before);
    for (int t = 0; t < T; t++) {
        pthread_join(threads[t], NULL);
        CHECK(jobs[t].failures == 0 && jobs[t].distance == 0.0);
        CHECK(memcmp(jobs[t].out, serial, len * sizeof(float)) == 0);
        free(jobs[t].out);
    }
    char after[512];
    bfl_last_error_message(after, sizeof after);
    CHECK(strcmp(before, after) == 0);
    free(serial);
    bfl_genome_free(g);
    bfl_featurizer_free(f);
    bfl_cell_free(cell);
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s <real-data-dir>\n", argv[0]);
        return 2;
    }
    cell_from_arrays_featurizes();
    real_cells_load_and_featurize(argv[1]);
    linear_model_predicts_with_intervals(argv[1]);
    cells_parse_from_bytes();
    shared_handles_across_threads(argv[1]);
    return report("test_data");
}
