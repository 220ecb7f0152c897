/* The BatLiNet model through the C ABI (needs the `tch` build): load, predict with a
 * reference set, export/import flat parameters, save, and concurrent predictions.
 * Usage: test_model <real-data-dir> <model-dir> <scratch-dir> */
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>

#include "check.h"

static const char *TRAIN[4] = {
    "MATR_2017-05-12_EL150800460486.json.gz", "MATR_2017-05-12_EL150800464977.json.gz",
    "MATR_2017-05-12_EL150800464883.json.gz", "MATR_2017-05-12_EL150800465027.json.gz",
};
static const char *TEST[2] = {
    "MATR_2017-05-12_EL150800463886.json.gz", "MATR_2017-05-12_EL150800460468.json.gz",
};

static const char *CALIBRATION[4] = {
    "MATR_2017-06-30_EL150800440551.json.gz", "MATR_2017-06-30_EL150800460449.json.gz",
    "MATR_2017-06-30_EL150800460451.json.gz", "MATR_2017-06-30_EL150800460466.json.gz",
};

static bfl_cell *load(const char *dir, const char *file) {
    char path[4096];
    snprintf(path, sizeof path, "%s/matr_severson_qv/%s", dir, file);
    bfl_cell *cell = NULL;
    OK(bfl_cell_load_json(path, &cell));
    if (cell) OK(bfl_cell_clean(cell, NULL));
    return cell;
}

typedef struct {
    const bfl_model *model;
    const bfl_dataset *targets, *refs;
    double out[2];
    bfl_status status;
} job_t;

static void *predict_job(void *arg) {
    job_t *job = arg;
    job->status = bfl_model_predict(job->model, job->targets, job->refs, job->out, 2, NULL);
    return NULL;
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: %s <real-data-dir> <model-dir> <scratch-dir>\n", argv[0]);
        return 2;
    }
    const char *data = argv[1], *model_dir = argv[2], *scratch = argv[3];

    bfl_model *model = NULL;
    FAILS(BFL_STATUS_IO, bfl_model_load("/nonexistent/model", &model));
    CHECK(model == NULL);
    OK(bfl_model_load(model_dir, &model));
    if (!model) return report("test_model");

    /* the featurizer the model was trained with */
    bfl_featurizer *f = NULL;
    OK(bfl_model_featurizer_new(model, &f));
    bfl_featurizer_config cfg;
    OK(bfl_featurizer_get_config(f, &cfg));
    CHECK(cfg.first_cycle == 2 && cfg.cycles == 99 && cfg.interp_dim == 100);

    bfl_cell *train[4], *test[2];
    for (int i = 0; i < 4; i++) train[i] = load(data, TRAIN[i]);
    for (int i = 0; i < 2; i++) test[i] = load(data, TEST[i]);
    bfl_dataset *refs = NULL, *targets = NULL;
    OK(bfl_model_dataset_new(model, (const bfl_cell *const *)train, 4, &refs));
    OK(bfl_model_dataset_new(model, (const bfl_cell *const *)test, 2, &targets));
    size_t n = 0;
    OK(bfl_dataset_len(refs, &n));
    CHECK(n == 4);
    const bfl_cell *with_null[2] = {test[0], NULL};
    bfl_dataset *broken = NULL;
    FAILS(BFL_STATUS_NULL_ARGUMENT, bfl_model_dataset_new(model, with_null, 2, &broken));
    CHECK(broken == NULL);

    double pred[3] = {0, 0, -1};
    size_t written = 0;
    FAILS(BFL_STATUS_BUFFER_TOO_SMALL, bfl_model_predict(model, targets, refs, pred, 1, &written));
    OK(bfl_model_predict(model, targets, refs, pred, 3, &written));
    CHECK(written == 2 && pred[2] == -1);
    for (int i = 0; i < 2; i++) CHECK(isfinite(pred[i]) && pred[i] > 50 && pred[i] < 10000);
    printf("predicted %.0f and %.0f cycles (recorded 636 and 1054)\n", pred[0], pred[1]);
    /* the same predictions with the bound flag, no calibration needed */
    double bounded_life[2] = {0, 0};
    uint8_t bound_flags[2] = {255, 255};
    FAILS(BFL_STATUS_BUFFER_TOO_SMALL, bfl_model_predict_bounded(model, targets, refs,
                                                                  bounded_life, bound_flags, 1,
                                                                  NULL));
    FAILS(BFL_STATUS_NULL_ARGUMENT,
          bfl_model_predict_bounded(model, targets, refs, NULL, bound_flags, 2, NULL));
    written = 0;
    OK(bfl_model_predict_bounded(model, targets, refs, bounded_life, bound_flags, 2, &written));
    CHECK(written == 2);
    for (int i = 0; i < 2; i++) {
        CHECK(bounded_life[i] == pred[i]);
        CHECK(bound_flags[i] == 0 || bound_flags[i] == BFL_PREDICTION_BOUNDED);
    }
    /* references must carry labels: MATR files hold early cycles only, so without the
     * recorded life the label is censored */
    bfl_cell *unlabelled = load(data, TRAIN[0]);
    OK(bfl_cell_set_cycle_life(unlabelled, 0));
    uint32_t life = 1;
    OK(bfl_cell_cycle_life(unlabelled, &life));
    CHECK(life == 0);
    bfl_dataset *no_labels = NULL;
    OK(bfl_model_dataset_new(model, (const bfl_cell *const *)&unlabelled, 1, &no_labels));
    double unused[2];
    FAILS(BFL_STATUS_INVALID_DATA, bfl_model_predict(model, targets, no_labels, unused, 2, NULL));
    bfl_dataset_free(no_labels);
    bfl_cell_free(unlabelled);

    /* several threads may predict with one model */
    pthread_t threads[3];
    job_t jobs[3];
    for (int t = 0; t < 3; t++) {
        jobs[t] = (job_t){.model = model, .targets = targets, .refs = refs};
        CHECK(pthread_create(&threads[t], NULL, predict_job, &jobs[t]) == 0);
    }
    for (int t = 0; t < 3; t++) {
        pthread_join(threads[t], NULL);
        CHECK(jobs[t].status == BFL_STATUS_OK);
        CHECK(jobs[t].out[0] == pred[0] && jobs[t].out[1] == pred[1]);
    }

    /* intervals: calibrate on four held-out cells, predict with flags */
    bfl_cell *held[4];
    for (int i = 0; i < 4; i++) held[i] = load(data, CALIBRATION[i]);
    bfl_dataset *calib_ds = NULL;
    OK(bfl_model_dataset_new(model, (const bfl_cell *const *)held, 4, &calib_ds));
    bfl_interval_calibration *cal = NULL;
    FAILS(BFL_STATUS_INVALID_CONFIG, bfl_model_calibrate(model, refs, refs, refs, &cal));
    CHECK(cal == NULL);
    FAILS(BFL_STATUS_NULL_ARGUMENT, bfl_model_calibrate(model, refs, NULL, refs, &cal));
    OK(bfl_model_calibrate(model, refs, calib_ds, refs, &cal));
    double lives[2], lower[2], upper[2];
    uint8_t flags[2] = {255, 255};
    OK(bfl_model_predict_intervals(model, targets, refs, cal, 0.8, lives, lower, upper, flags, 2,
                                   &written));
    CHECK(written == 2);
    for (int i = 0; i < 2; i++) {
        CHECK(lives[i] == pred[i] && lower[i] <= lives[i] && lives[i] <= upper[i]);
        CHECK((flags[i] & ~(BFL_PREDICTION_OUT_OF_DISTRIBUTION | BFL_PREDICTION_BOUNDED |
                            BFL_PREDICTION_OUTSIDE_LABEL_RANGE)) == 0);
    }
    printf("80 %% intervals: [%.0f, %.0f] and [%.0f, %.0f] cycles\n", lower[0], upper[0],
           lower[1], upper[1]);
    FAILS(BFL_STATUS_NOT_ENOUGH_DATA, bfl_model_predict_intervals(model, targets, refs, cal, 0.9,
                                                                   lives, lower, upper, flags,
                                                                   2, NULL));
    /* a coverage outside (0, 1), NaN included, is refused */
    const double outside[] = {1.5, 1.0, 0.0, -0.2, NAN};
    for (size_t i = 0; i < sizeof outside / sizeof outside[0]; i++) {
        FAILS(BFL_STATUS_INVALID_CONFIG,
              bfl_model_predict_intervals(model, targets, refs, cal, outside[i], lives, lower,
                                          upper, flags, 2, NULL));
    }
    FAILS(BFL_STATUS_BUFFER_TOO_SMALL, bfl_model_predict_intervals(model, targets, refs, cal,
                                                                    0.8, lives, lower, upper,
                                                                    flags, 1, NULL));
    bfl_dataset_free(calib_ds);
    for (int i = 0; i < 4; i++) bfl_cell_free(held[i]);

    /* flat parameters: export, perturb, import, restore */
    size_t np = 0;
    OK(bfl_model_num_params(model, &np));
    CHECK(np > 100);
    float *w = malloc(np * sizeof *w), *w2 = malloc(np * sizeof *w2);
    FAILS(BFL_STATUS_BUFFER_TOO_SMALL, bfl_model_export_params(model, w, np - 1, NULL));
    OK(bfl_model_export_params(model, w, np, &written));
    CHECK(written == np);
    for (size_t k = 0; k < np; k++) w2[k] = w[k] * 0.5f;
    OK(bfl_model_import_params(model, w2, np));
    double changed[2];
    OK(bfl_model_predict(model, targets, refs, changed, 2, NULL));
    CHECK(changed[0] != pred[0]);
    /* the calibration belongs to the weights it was made with */
    FAILS(BFL_STATUS_MODEL, bfl_model_predict_intervals(model, targets, refs, cal, 0.8, lives,
                                                         lower, upper, flags, 2, NULL));
    FAILS(BFL_STATUS_SHAPE, bfl_model_import_params(model, w, np - 1));
    OK(bfl_model_import_params(model, w, np));
    OK(bfl_model_predict(model, targets, refs, changed, 2, NULL));
    CHECK(changed[0] == pred[0] && changed[1] == pred[1]);
    OK(bfl_model_predict_intervals(model, targets, refs, cal, 0.8, lives, lower, upper, flags, 2,
                                   NULL));
    bfl_interval_calibration_free(cal);

    /* save and load again */
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/saved-model", scratch);
    OK(bfl_model_save(model, dir));
    bfl_model *again = NULL;
    OK(bfl_model_load(dir, &again));
    OK(bfl_model_predict(again, targets, refs, changed, 2, NULL));
    CHECK(changed[0] == pred[0] && changed[1] == pred[1]);
    OK(bfl_model_export_params(again, w2, np, NULL));
    CHECK(memcmp(w, w2, np * sizeof *w) == 0);
    bfl_model_free(again);

    free(w);
    free(w2);
    bfl_dataset_free(refs);
    bfl_dataset_free(targets);
    for (int i = 0; i < 4; i++) bfl_cell_free(train[i]);
    for (int i = 0; i < 2; i++) bfl_cell_free(test[i]);
    bfl_featurizer_free(f);
    bfl_model_free(model);
    return report("test_model");
}
