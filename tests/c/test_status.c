/* Status codes, error messages, NULL arguments, short buffers and _free(NULL). */
#include <stdint.h>
#include <stdlib.h>

#include "check.h"

static void status_numbers_are_stable(void) {
    /* the ABI: these numbers never change */
    CHECK(BFL_STATUS_OK == 0);
    CHECK(BFL_STATUS_NULL_ARGUMENT == 1);
    CHECK(BFL_STATUS_INVALID_ARGUMENT == 2);
    CHECK(BFL_STATUS_BUFFER_TOO_SMALL == 3);
    CHECK(BFL_STATUS_PANIC == 4);
    CHECK(BFL_STATUS_UNSUPPORTED == 5);
    CHECK(BFL_STATUS_IO == 10);
    CHECK(BFL_STATUS_PARSE == 11);
    CHECK(BFL_STATUS_INVALID_DATA == 12);
    CHECK(BFL_STATUS_INVALID_CONFIG == 13);
    CHECK(BFL_STATUS_SHAPE == 14);
    CHECK(BFL_STATUS_NOT_ENOUGH_DATA == 15);
    CHECK(BFL_STATUS_MODEL == 16);
    CHECK(BFL_STATUS_REJECTED_UPDATE == 17);
    CHECK(BFL_STATUS_AGGREGATION == 18);
    CHECK(BFL_STATUS_PRIVACY == 19);
    CHECK(BFL_STATUS_BUDGET_EXHAUSTED == 20);
    CHECK(BFL_STATUS_SECAGG == 21);
    CHECK(BFL_STATUS_BELOW_THRESHOLD == 22);
    CHECK(BFL_AGGREGATOR_KIND_FED_AVG == 1 && BFL_AGGREGATOR_KIND_FED_ADAGRAD == 7);
    CHECK(BFL_DP_MODE_CENTRAL == 1 && BFL_DP_MODE_DISTRIBUTED == 3);

    CHECK(strcmp(bfl_status_str(BFL_STATUS_OK), "ok") == 0);
    CHECK(strcmp(bfl_status_str(BFL_STATUS_SHAPE), "shape mismatch") == 0);
    CHECK(strcmp(bfl_status_str(-1), "unknown status") == 0);
    CHECK(strcmp(bfl_status_str(9), "unknown status") == 0);
    CHECK(strcmp(bfl_status_str(1000), "unknown status") == 0);
    for (int s = 0; s <= 22; s++) {
        CHECK(bfl_status_str(s) != NULL && strlen(bfl_status_str(s)) > 0);
    }
}

static void last_error_message_contract(void) {
    bfl_featurizer *f = (bfl_featurizer *)&f; /* must be reset to NULL on failure */
    FAILS(BFL_STATUS_INVALID_CONFIG,
          bfl_featurizer_new(&(bfl_featurizer_config){.cycles = 0, .interp_dim = 10}, &f));
    CHECK(f == NULL);

    char buf[256];
    ptrdiff_t n = bfl_last_error_message(buf, sizeof buf);
    CHECK(n > 0 && (size_t)n == strlen(buf));
    CHECK(strstr(buf, "cycles") != NULL); /* names the field */

    /* NULL buffer: the negative of the size needed (message + NUL) */
    ptrdiff_t needed = bfl_last_error_message(NULL, 0);
    CHECK(needed == -(n + 1));
    /* too small: truncated, NUL-terminated, negative size needed */
    char small[8];
    memset(small, 'x', sizeof small);
    CHECK(bfl_last_error_message(small, sizeof small) == -(n + 1));
    CHECK(small[7] == '\0' && strlen(small) == 7 && strncmp(small, buf, 7) == 0);
    CHECK(bfl_last_error_message(small, 0) == -(n + 1));
    /* exactly enough */
    char *exact = malloc((size_t)n + 1);
    CHECK(bfl_last_error_message(exact, (size_t)n + 1) == n && strcmp(exact, buf) == 0);
    free(exact);

    /* a success does not clear it */
    OK(bfl_featurizer_new_default(&f));
    bfl_featurizer_free(f);
    CHECK(bfl_last_error_message(buf, sizeof buf) == n);
}

static void null_arguments_are_reported(void) {
    size_t n = 0;
    FAILS(BFL_STATUS_NULL_ARGUMENT, bfl_cell_load_json(NULL, NULL));
    bfl_cell *cell = NULL;
    FAILS(BFL_STATUS_NULL_ARGUMENT, bfl_cell_load_json(NULL, &cell));
    FAILS(BFL_STATUS_NULL_ARGUMENT, bfl_cell_load_json("x.json", NULL));
    FAILS(BFL_STATUS_NULL_ARGUMENT, bfl_cell_parse_json(NULL, 10, &cell));
    FAILS(BFL_STATUS_NULL_ARGUMENT, bfl_cell_new(NULL, &cell));
    FAILS(BFL_STATUS_NULL_ARGUMENT, bfl_cell_new(&(bfl_cell_meta){.nominal_capacity_ah = 1.0}, &cell));
    FAILS(BFL_STATUS_NULL_ARGUMENT, bfl_cell_add_cycle(NULL, NULL));
    FAILS(BFL_STATUS_NULL_ARGUMENT, bfl_cell_num_cycles(NULL, &n));
    FAILS(BFL_STATUS_NULL_ARGUMENT, bfl_cell_validate(NULL));
    FAILS(BFL_STATUS_NULL_ARGUMENT, bfl_cell_clean(NULL, NULL));
    FAILS(BFL_STATUS_NULL_ARGUMENT, bfl_cell_set_cycle_life(NULL, 3));
    FAILS(BFL_STATUS_NULL_ARGUMENT, bfl_featurizer_new_default(NULL));
    FAILS(BFL_STATUS_NULL_ARGUMENT, bfl_featurizer_new(NULL, NULL));
    FAILS(BFL_STATUS_NULL_ARGUMENT, bfl_featurizer_output_len(NULL, &n));
    FAILS(BFL_STATUS_NULL_ARGUMENT, bfl_featurizer_transform(NULL, NULL, NULL, 0, NULL));
    FAILS(BFL_STATUS_NULL_ARGUMENT, bfl_genome_from_cell(NULL, NULL));
    FAILS(BFL_STATUS_NULL_ARGUMENT, bfl_genome_distance(NULL, NULL, NULL));
    FAILS(BFL_STATUS_NULL_ARGUMENT, bfl_model_load(NULL, NULL));
    FAILS(BFL_STATUS_NULL_ARGUMENT, bfl_model_predict(NULL, NULL, NULL, NULL, 0, NULL));
    FAILS(BFL_STATUS_NULL_ARGUMENT, bfl_model_export_params(NULL, NULL, 0, NULL));
    FAILS(BFL_STATUS_NULL_ARGUMENT, bfl_model_import_params(NULL, NULL, 0));
    FAILS(BFL_STATUS_NULL_ARGUMENT, bfl_dataset_len(NULL, &n));
    FAILS(BFL_STATUS_NULL_ARGUMENT, bfl_aggregator_new(BFL_AGGREGATOR_KIND_FED_AVG, NULL, NULL));
    FAILS(BFL_STATUS_NULL_ARGUMENT, bfl_aggregator_add_update(NULL, "a", 1, NULL, 0, false));
    FAILS(BFL_STATUS_NULL_ARGUMENT, bfl_aggregator_finish(NULL, NULL, 0, NULL, 0));
    FAILS(BFL_STATUS_NULL_ARGUMENT, bfl_dp_clip(NULL, 3, 1.0, NULL));
    FAILS(BFL_STATUS_NULL_ARGUMENT, bfl_dp_add_noise(NULL, 3, 1.0, 7));
    FAILS(BFL_STATUS_NULL_ARGUMENT, bfl_accountant_new(NULL));
    FAILS(BFL_STATUS_NULL_ARGUMENT, bfl_accountant_step(NULL, 1.0, 1.0, 1));
    FAILS(BFL_STATUS_NULL_ARGUMENT, bfl_accountant_epsilon(NULL, 1e-5, NULL));
    FAILS(BFL_STATUS_NULL_ARGUMENT, bfl_secagg_server_new(NULL, 1, 4, NULL, 0, NULL, 0, NULL, NULL));
    FAILS(BFL_STATUS_NULL_ARGUMENT, bfl_secagg_server_receive_keys(NULL, 1, NULL, 0));
    FAILS(BFL_STATUS_NULL_ARGUMENT, bfl_secagg_server_set_run(NULL, 1));
    FAILS(BFL_STATUS_NULL_ARGUMENT, bfl_secagg_client_new(1, NULL, 0, NULL, 0, NULL, NULL, NULL));
    FAILS(BFL_STATUS_NULL_ARGUMENT, bfl_secagg_client_advertise_keys(NULL, NULL));
    FAILS(BFL_STATUS_NULL_ARGUMENT, bfl_bytes_data(NULL, NULL, NULL));
    FAILS(BFL_STATUS_NULL_ARGUMENT, bfl_message_batch_len(NULL, &n));
    /* a zero-length array may be NULL; the rest of the call is still checked */
    bfl_aggregator *agg = NULL;
    OK(bfl_aggregator_new(BFL_AGGREGATOR_KIND_FED_AVG, NULL, &agg));
    OK(bfl_aggregator_add_update(agg, "empty", 1, NULL, 0, false));
    FAILS(BFL_STATUS_NULL_ARGUMENT, bfl_aggregator_add_update(agg, NULL, 1, NULL, 0, false));
    bfl_aggregator_free(agg);
}

static void free_null_is_a_no_op(void) {
    bfl_cell_free(NULL);
    bfl_featurizer_free(NULL);
    bfl_genome_free(NULL);
    bfl_model_free(NULL);
    bfl_dataset_free(NULL);
    bfl_aggregator_free(NULL);
    bfl_accountant_free(NULL);
    bfl_bytes_free(NULL);
    bfl_message_batch_free(NULL);
    bfl_secagg_pki_free(NULL);
    bfl_secagg_server_free(NULL);
    bfl_secagg_client_free(NULL);
    CHECK(1);
}

static void bad_values_are_reported(void) {
    bfl_aggregator *agg = NULL;
    FAILS(BFL_STATUS_INVALID_ARGUMENT, bfl_aggregator_new(0, NULL, &agg));
    FAILS(BFL_STATUS_INVALID_ARGUMENT, bfl_aggregator_new(99, NULL, &agg));
    CHECK(agg == NULL);
    FAILS(BFL_STATUS_INVALID_ARGUMENT, bfl_dp_noise_std(42, 1.0, 1.0, 3, NULL, NULL));
    /* misaligned float buffer */
    _Alignas(4) unsigned char raw[16] = {0};
    FAILS(BFL_STATUS_INVALID_ARGUMENT, bfl_dp_clip((float *)(void *)(raw + 1), 2, 1.0, NULL));
    /* a length that cannot be a real buffer */
    float x[2] = {1, 2};
    FAILS(BFL_STATUS_INVALID_ARGUMENT, bfl_dp_clip(x, SIZE_MAX / 2, 1.0, NULL));
    /* seeds must be exactly 32 bytes */
    uint8_t seed[32] = {1};
    uint64_t ids[3] = {1, 2, 3};
    bfl_secagg_config cfg;
    OK(bfl_secagg_config_default(3, &cfg));
    bfl_secagg_server *server = NULL;
    FAILS(BFL_STATUS_INVALID_ARGUMENT, bfl_secagg_server_new(&cfg, 1, 4, ids, 3, seed, 31, NULL, &server));
    CHECK(server == NULL);
    /* the model without a model directory: IO with libtorch, UNSUPPORTED without */
    bfl_model *model = NULL;
    bfl_status s = bfl_model_load("/nonexistent/model", &model);
    CHECK((s == BFL_STATUS_IO || s == BFL_STATUS_UNSUPPORTED) && model == NULL);
    printf("model support: %s\n", s == BFL_STATUS_IO ? "yes (tch)" : "no");
}

int main(void) {
    status_numbers_are_stable();
    last_error_message_contract();
    null_arguments_are_reported();
    free_null_is_a_no_op();
    bad_values_are_reported();
    return report("test_status");
}
