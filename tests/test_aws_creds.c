/*
 * test_aws_creds.c - where the s3 remote finds AWS credentials, region and
 * endpoint (aws_creds.c): each source in its order, which one wins, and
 * every way the shared files can be malformed. Every error message is
 * checked not to carry a secret. Each test starts from an environment with
 * no AWS variable and HOME in a fresh temp directory.
 */
#include "testutil.h"

#include "remote/aws_creds.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const char *const VARS[] = {
    "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
    "AWS_SHARED_CREDENTIALS_FILE", "AWS_CONFIG_FILE", "AWS_REGION", "AWS_DEFAULT_REGION",
    "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL",
};

static char *home;

static int setup(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof VARS / sizeof VARS[0]; i++)
        unsetenv(VARS[i]);
    home = tu_mkdtemp("aws-creds");
    setenv("HOME", home, 1);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    tu_rmtree(home);
    free(home);
    return 0;
}

/* Writes text to HOME/name (making HOME/.aws for ".aws/..."); returns the
 * path (static buffer, valid until the next call). */
static const char *write_home(const char *name, const char *text)
{
    static char path[4096];
    snprintf(path, sizeof path, "%s/.aws", home);
    mkdir(path, 0700);
    snprintf(path, sizeof path, "%s/%s", home, name);
    tu_write_file(path, text, strlen(text));
    return path;
}

static void assert_no_secret(const char *text, const char *secret)
{
    if (strstr(text, secret))
        fail_msg("'%s' shows a secret", text);
}

static void test_env_keys(void **state)
{
    (void)state;
    aws_creds c;
    setenv("AWS_ACCESS_KEY_ID", "AKIDENV", 1);
    setenv("AWS_SECRET_ACCESS_KEY", "env/secret+1", 1);
    /* A profile with other keys is not asked: the environment wins. */
    write_home(".aws/credentials", "[default]\naws_access_key_id = AKIDFILE\n"
                                   "aws_secret_access_key = file-secret\n");
    assert_int_equal(aws_creds_find(&c), ACACHE_OK);
    assert_true(c.have_keys);
    assert_string_equal(c.key_id, "AKIDENV");
    assert_string_equal(c.secret, "env/secret+1");
    assert_string_equal(c.token, "");
    assert_string_equal(c.source, "environment (AWS_ACCESS_KEY_ID)");
    assert_string_equal(c.region, "us-east-1");
    assert_string_equal(c.region_source, "default");
    assert_string_equal(c.endpoint, "");
    setenv("AWS_SESSION_TOKEN", "env-token", 1);
    assert_int_equal(aws_creds_find(&c), ACACHE_OK);
    assert_string_equal(c.token, "env-token");
    assert_string_equal(c.source, "environment (AWS_ACCESS_KEY_ID, AWS_SESSION_TOKEN)");
    assert_no_secret(c.source, "env-token");
    aws_creds_wipe(&c);
    assert_string_equal(c.secret, "");
    assert_string_equal(c.token, "");
}

static void test_env_half_a_pair(void **state)
{
    (void)state;
    aws_creds c;
    setenv("AWS_SECRET_ACCESS_KEY", "lonely/secret", 1);
    assert_int_equal(aws_creds_find(&c), ACACHE_EINVAL);
    assert_non_null(strstr(acache_last_error(), "AWS_SECRET_ACCESS_KEY is set but "
                                                "AWS_ACCESS_KEY_ID is not"));
    assert_no_secret(acache_last_error(), "lonely/secret");
    unsetenv("AWS_SECRET_ACCESS_KEY");
    setenv("AWS_ACCESS_KEY_ID", "AKIDONLY", 1);
    assert_int_equal(aws_creds_find(&c), ACACHE_EINVAL);
    assert_non_null(strstr(acache_last_error(), "AWS_ACCESS_KEY_ID is set but"));
}

static void test_default_profile_in_home(void **state)
{
    (void)state;
    aws_creds c;
    char want[4200];
    const char *cred = write_home(".aws/credentials",
                                  "# written by aws configure\n[other]\naws_access_key_id=AKIDOTHER\n"
                                  "aws_secret_access_key=other\n\n[default]\r\n"
                                  "AWS_ACCESS_KEY_ID = AKIDHOME\r\n"
                                  "  ; indented comment\n"
                                  "aws_secret_access_key =   home/secret+x  \n");
    snprintf(want, sizeof want, "profile default in %s", cred);
    const char *conf = write_home(".aws/config", "[profile other]\nregion = ap-south-1\n"
                                                 "[default]\nregion = eu-north-1\ns3 =\n"
                                                 "    addressing_style = path\n");
    assert_int_equal(aws_creds_find(&c), ACACHE_OK);
    assert_true(c.have_keys);
    assert_string_equal(c.key_id, "AKIDHOME");
    assert_string_equal(c.secret, "home/secret+x");
    assert_string_equal(c.source, want);
    assert_string_equal(c.region, "eu-north-1");
    snprintf(want, sizeof want, "profile default in %s", conf);
    assert_string_equal(c.region_source, want);
}

static void test_named_profile_in_given_files(void **state)
{
    (void)state;
    aws_creds c;
    char cred[4096], conf[4096], want[4200];
    snprintf(cred, sizeof cred, "%s/creds.ini", home);
    snprintf(conf, sizeof conf, "%s/conf.ini", home);
    const char *ct = "[default]\naws_access_key_id=AKIDDEF\naws_secret_access_key=def\n"
                     "[ci]\naws_access_key_id=AKIDCI\naws_secret_access_key=ci/secret\n"
                     "aws_session_token=ci-token\n";
    const char *cf = "[default]\nregion=us-west-2\n[profile   ci ]\nregion=eu-west-3\n";
    tu_write_file(cred, ct, strlen(ct));
    tu_write_file(conf, cf, strlen(cf));
    /* Files in HOME are not read when the variables name others. */
    write_home(".aws/credentials", "[ci]\naws_access_key_id=AKIDWRONG\n"
                                   "aws_secret_access_key=wrong\n");
    setenv("AWS_SHARED_CREDENTIALS_FILE", cred, 1);
    setenv("AWS_CONFIG_FILE", conf, 1);
    setenv("AWS_PROFILE", "ci", 1);
    assert_int_equal(aws_creds_find(&c), ACACHE_OK);
    assert_string_equal(c.key_id, "AKIDCI");
    assert_string_equal(c.secret, "ci/secret");
    assert_string_equal(c.token, "ci-token");
    snprintf(want, sizeof want, "profile ci in %s", cred);
    assert_string_equal(c.source, want);
    assert_string_equal(c.region, "eu-west-3");
}

static void test_keys_in_config_file(void **state)
{
    (void)state;
    aws_creds c;
    char want[4200];
    const char *conf = write_home(".aws/config", "[profile dev]\naws_access_key_id=AKIDCONF\n"
                                                 "aws_secret_access_key=conf-secret\n"
                                                 "region=ca-central-1\n");
    setenv("AWS_PROFILE", "dev", 1);
    assert_int_equal(aws_creds_find(&c), ACACHE_OK);
    assert_string_equal(c.key_id, "AKIDCONF");
    snprintf(want, sizeof want, "profile dev in %s", conf);
    assert_string_equal(c.source, want);
    assert_string_equal(c.region, "ca-central-1");
}

static void test_missing_profile(void **state)
{
    (void)state;
    aws_creds c;
    write_home(".aws/credentials", "[default]\naws_access_key_id=A\naws_secret_access_key=B\n");
    setenv("AWS_PROFILE", "nosuch", 1);
    assert_int_equal(aws_creds_find(&c), ACACHE_EINVAL);
    assert_non_null(strstr(acache_last_error(), "AWS_PROFILE names profile nosuch"));
    /* With keys in the environment the profile is only asked for its region. */
    setenv("AWS_ACCESS_KEY_ID", "AKIDENV", 1);
    setenv("AWS_SECRET_ACCESS_KEY", "s", 1);
    assert_int_equal(aws_creds_find(&c), ACACHE_OK);
    assert_string_equal(c.key_id, "AKIDENV");
}

static void test_anonymous(void **state)
{
    (void)state;
    aws_creds c;
    assert_int_equal(aws_creds_find(&c), ACACHE_OK);
    assert_false(c.have_keys);
    assert_string_equal(c.source, "none (anonymous)");
    /* A token without keys is no credential. */
    write_home(".aws/credentials", "[default]\naws_session_token = stray\n");
    assert_int_equal(aws_creds_find(&c), ACACHE_OK);
    assert_false(c.have_keys);
    assert_string_equal(c.token, "");
    /* No HOME and no variables: nothing to read, still anonymous. */
    unsetenv("HOME");
    assert_int_equal(aws_creds_find(&c), ACACHE_OK);
    assert_false(c.have_keys);
    setenv("HOME", home, 1);
}

static void test_region_and_endpoint_order(void **state)
{
    (void)state;
    aws_creds c;
    write_home(".aws/config", "[default]\nregion = eu-central-1\n");
    setenv("AWS_DEFAULT_REGION", "ap-northeast-1", 1);
    assert_int_equal(aws_creds_find(&c), ACACHE_OK);
    assert_string_equal(c.region, "ap-northeast-1");
    assert_string_equal(c.region_source, "AWS_DEFAULT_REGION");
    setenv("AWS_REGION", "sa-east-1", 1);
    assert_int_equal(aws_creds_find(&c), ACACHE_OK);
    assert_string_equal(c.region, "sa-east-1");
    assert_string_equal(c.region_source, "AWS_REGION");
    setenv("AWS_ENDPOINT_URL", "http://all.example:9000", 1);
    assert_int_equal(aws_creds_find(&c), ACACHE_OK);
    assert_string_equal(c.endpoint, "http://all.example:9000");
    assert_string_equal(c.endpoint_source, "AWS_ENDPOINT_URL");
    setenv("AWS_ENDPOINT_URL_S3", "http://s3.example:9000", 1);
    assert_int_equal(aws_creds_find(&c), ACACHE_OK);
    assert_string_equal(c.endpoint, "http://s3.example:9000");
    assert_string_equal(c.endpoint_source, "AWS_ENDPOINT_URL_S3");
}

/* Each malformed file is refused with its path and line, never its text. */
static void test_malformed_files(void **state)
{
    (void)state;
    static const struct {
        const char *text, *want;
    } cases[] = {
        { "[default]\naws_secret_access_key leaked-secret-1\n", "line 2 is not 'key = value'" },
        { "[default\naws_access_key_id=A\n", "line 1: a section header wants '[NAME]'" },
        { "[]\n", "line 1: a section header wants '[NAME]'" },
        { "[default]\n= leaked-secret-1\n", "line 2 is not 'key = value'" },
        { "[other]\nleaked-secret-1\n", "line 2 is not 'key = value'" },
        { "[default]\naws_access_key_id=A\n", "has aws_access_key_id but no "
                                              "aws_secret_access_key" },
        { "[default]\naws_secret_access_key=leaked-secret-1\n", "has aws_secret_access_key "
                                                               "but no aws_access_key_id" },
    };
    aws_creds c;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *path = write_home(".aws/credentials", cases[i].text);
        if (aws_creds_find(&c) != ACACHE_EINVAL)
            fail_msg("case %zu: accepted", i);
        const char *msg = acache_last_error();
        if (!strstr(msg, cases[i].want) || !strstr(msg, path))
            fail_msg("case %zu: '%s' does not say '%s' about %s", i, msg, cases[i].want, path);
        assert_no_secret(msg, "leaked-secret-1");
        assert_false(c.have_keys);
        assert_string_equal(c.secret, "");
    }
}

static void test_too_long(void **state)
{
    (void)state;
    aws_creds c;
    char text[AWS_SECRET_MAX + 200], big[AWS_SECRET_MAX + 10];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    snprintf(text, sizeof text, "[default]\naws_access_key_id=A\naws_secret_access_key=%s\n", big);
    write_home(".aws/credentials", text);
    assert_int_equal(aws_creds_find(&c), ACACHE_EINVAL);
    assert_non_null(strstr(acache_last_error(), "aws_secret_access_key in"));
    assert_non_null(strstr(acache_last_error(), "is too long"));
    assert_no_secret(acache_last_error(), big);
    tu_rmtree(home);
    mkdir(home, 0700);
    setenv("AWS_ACCESS_KEY_ID", "A", 1);
    setenv("AWS_SECRET_ACCESS_KEY", big, 1);
    assert_int_equal(aws_creds_find(&c), ACACHE_EINVAL);
    assert_non_null(strstr(acache_last_error(), "AWS_SECRET_ACCESS_KEY is too long"));
    unsetenv("AWS_SECRET_ACCESS_KEY");
    unsetenv("AWS_ACCESS_KEY_ID");
    char region[AWS_REGION_MAX + 4];
    memset(region, 'r', sizeof region - 1);
    region[sizeof region - 1] = '\0';
    setenv("AWS_REGION", region, 1);
    assert_int_equal(aws_creds_find(&c), ACACHE_EINVAL);
    assert_non_null(strstr(acache_last_error(), "AWS_REGION is too long"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_env_keys, setup, teardown),
        cmocka_unit_test_setup_teardown(test_env_half_a_pair, setup, teardown),
        cmocka_unit_test_setup_teardown(test_default_profile_in_home, setup, teardown),
        cmocka_unit_test_setup_teardown(test_named_profile_in_given_files, setup, teardown),
        cmocka_unit_test_setup_teardown(test_keys_in_config_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_missing_profile, setup, teardown),
        cmocka_unit_test_setup_teardown(test_anonymous, setup, teardown),
        cmocka_unit_test_setup_teardown(test_region_and_endpoint_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_malformed_files, setup, teardown),
        cmocka_unit_test_setup_teardown(test_too_long, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
