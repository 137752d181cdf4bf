/* TLS for clients: the server context, built from the tls-* directives as
 * Redis 7.0 builds its own, and rebuilt whole when one of them changes. */
#include "proxy/core/tls.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "proxy/core/config.h"
#include "util/log.h"
#include "util/args.h"

static SSL_CTX *server_ctx;

static const char *openssl_reason(void)
{
    unsigned long e = ERR_peek_last_error();
    const char *r = e ? ERR_reason_error_string(e) : NULL;
    return r ? r : "unknown error";
}

/* tls-protocols: the versions to allow; empty means TLSv1.2 and TLSv1.3. */
static int protocols_to_options(const char *spec, long *options, char *err, size_t errlen)
{
    static const struct {
        const char *name;
        long no_option;
    } versions[] = {{"TLSv1", SSL_OP_NO_TLSv1},
                    {"TLSv1.1", SSL_OP_NO_TLSv1_1},
                    {"TLSv1.2", SSL_OP_NO_TLSv1_2},
                    {"TLSv1.3", SSL_OP_NO_TLSv1_3}};
    const size_t n = sizeof(versions) / sizeof(versions[0]);
    long all_off = 0;
    for (size_t i = 0; i < n; i++) all_off |= versions[i].no_option;
    if (!spec || !spec[0]) {
        *options = SSL_OP_NO_TLSv1 | SSL_OP_NO_TLSv1_1;
        return 0;
    }
    long off = all_off;
    int argc;
    char **argv = split_args(spec, &argc);
    if (!argv) argc = 0;
    for (int i = 0; i < argc; i++) {
        size_t k = 0;
        while (k < n && strcasecmp(argv[i], versions[k].name) != 0) k++;
        if (k == n) {
            snprintf(err, errlen,
                     "Invalid tls-protocols specified. Use a combination of 'TLSv1', 'TLSv1.1', 'TLSv1.2' and "
                     "'TLSv1.3'.");
            free_args(argv, argc);
            return -1;
        }
        off &= ~versions[k].no_option;
    }
    free_args(argv, argc);
    if (off == all_off) {
        snprintf(err, errlen, "tls-protocols enables no protocol version");
        return -1;
    }
    *options = off;
    return 0;
}

/* tls-key-file-pass: the pass phrase of an encrypted key file. */
static int key_pass_cb(char *buf, int size, int rwflag, void *u)
{
    (void)rwflag;
    const char *pass = u;
    if (!pass) return 0;
    size_t len = strlen(pass);
    if (len > (size_t)size) len = (size_t)size;
    memcpy(buf, pass, len);
    return (int)len;
}

static SSL_CTX *build_context(char *err, size_t errlen)
{
    long protocol_off;
    if (!config.tls_cert_file) {
        snprintf(err, errlen, "No tls-cert-file configured!");
        return NULL;
    }
    if (!config.tls_key_file) {
        snprintf(err, errlen, "No tls-key-file configured!");
        return NULL;
    }
    if (config.tls_auth_clients != TLS_AUTH_CLIENTS_NO && !config.tls_ca_cert_file && !config.tls_ca_cert_dir) {
        snprintf(err, errlen, "Either tls-ca-cert-file or tls-ca-cert-dir must be specified when tls-auth-clients "
                              "is enabled!");
        return NULL;
    }
    if (protocols_to_options(config.tls_protocols, &protocol_off, err, errlen) != 0) return NULL;

    ERR_clear_error();
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) {
        snprintf(err, errlen, "Failed to create a TLS context: %s", openssl_reason());
        return NULL;
    }
    long options = SSL_OP_NO_SSLv2 | SSL_OP_NO_SSLv3 | SSL_OP_NO_COMPRESSION | SSL_OP_SINGLE_DH_USE | protocol_off;
#ifdef SSL_OP_NO_CLIENT_RENEGOTIATION
    options |= SSL_OP_NO_CLIENT_RENEGOTIATION;
#endif
#ifdef SSL_OP_IGNORE_UNEXPECTED_EOF
    /* Clients that close without close_notify (redis-cli does) just close;
     * RESP frames itself, so a cut-off stream cannot pass as complete. */
    options |= SSL_OP_IGNORE_UNEXPECTED_EOF;
#endif
    if (config.tls_prefer_server_ciphers) options |= SSL_OP_CIPHER_SERVER_PREFERENCE;
    SSL_CTX_set_options(ctx, (unsigned long)options);
    /* bufferevent_openssl may retry a write with a moved buffer. */
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);

    if (config.tls_session_caching) {
        SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER);
        SSL_CTX_sess_set_cache_size(ctx, config.tls_session_cache_size);
        SSL_CTX_set_timeout(ctx, config.tls_session_cache_timeout);
        SSL_CTX_set_session_id_context(ctx, (const unsigned char *)"evalproxy", 9);
    } else {
        SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    }

    SSL_CTX_set_default_passwd_cb(ctx, key_pass_cb);
    SSL_CTX_set_default_passwd_cb_userdata(ctx, config.tls_key_file_pass);
    if (SSL_CTX_use_certificate_chain_file(ctx, config.tls_cert_file) != 1) {
        snprintf(err, errlen, "Failed to load certificate: %s: %s", config.tls_cert_file, openssl_reason());
        goto fail;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, config.tls_key_file, SSL_FILETYPE_PEM) != 1) {
        snprintf(err, errlen, "Failed to load private key: %s: %s", config.tls_key_file, openssl_reason());
        goto fail;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
        snprintf(err, errlen, "Private key %s does not match certificate %s: %s", config.tls_key_file,
                 config.tls_cert_file, openssl_reason());
        goto fail;
    }
    /* The pass phrase is needed only while the key is read. */
    SSL_CTX_set_default_passwd_cb_userdata(ctx, NULL);
    if ((config.tls_ca_cert_file || config.tls_ca_cert_dir) &&
        SSL_CTX_load_verify_locations(ctx, config.tls_ca_cert_file, config.tls_ca_cert_dir) != 1) {
        snprintf(err, errlen, "Failed to configure CA certificate(s) file/directory: %s", openssl_reason());
        goto fail;
    }
    if (config.tls_ciphers && SSL_CTX_set_cipher_list(ctx, config.tls_ciphers) != 1) {
        snprintf(err, errlen, "Failed to configure ciphers: %s", config.tls_ciphers);
        goto fail;
    }
    if (config.tls_ciphersuites && SSL_CTX_set_ciphersuites(ctx, config.tls_ciphersuites) != 1) {
        snprintf(err, errlen, "Failed to configure ciphersuites: %s", config.tls_ciphersuites);
        goto fail;
    }
    int verify = SSL_VERIFY_NONE;
    if (config.tls_auth_clients == TLS_AUTH_CLIENTS_YES) verify = SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
    else if (config.tls_auth_clients == TLS_AUTH_CLIENTS_OPTIONAL) verify = SSL_VERIFY_PEER;
    SSL_CTX_set_verify(ctx, verify, NULL);
    return ctx;
fail:
    SSL_CTX_free(ctx);
    return NULL;
}

int tls_configure(char *err, size_t errlen)
{
    if (!config.tls_port) return 0;
    SSL_CTX *ctx = build_context(err, errlen);
    ERR_clear_error();
    if (!ctx) return -1;
    /* Open connections hold their own reference to the old context. */
    SSL_CTX_free(server_ctx);
    server_ctx = ctx;
    return 0;
}

SSL *tls_new_server_ssl(void)
{
    if (!server_ctx) return NULL;
    SSL *ssl = SSL_new(server_ctx);
    if (!ssl) {
        log_warning("Error creating a TLS connection: %s", openssl_reason());
        ERR_clear_error();
    }
    return ssl;
}

int tls_is_context_directive(const char *name, size_t len)
{
    return len > 4 && !strncasecmp(name, "tls-", 4) && !(len == 8 && !strncasecmp(name, "tls-port", 8));
}

const char *tls_bufferevent_error(struct bufferevent *bev, char *buf, size_t len)
{
    unsigned long first = bufferevent_get_openssl_error(bev);
    if (!first) return NULL;
    while (bufferevent_get_openssl_error(bev)) {
    }
    const char *reason = ERR_reason_error_string(first);
    SSL *ssl = bufferevent_openssl_get_ssl(bev);
    long verify = ssl ? SSL_get_verify_result(ssl) : X509_V_OK;
    if (verify != X509_V_OK)
        snprintf(buf, len, "%s (%s)", reason ? reason : "TLS error", X509_verify_cert_error_string(verify));
    else
        snprintf(buf, len, "%s", reason ? reason : "TLS error");
    return buf;
}

void tls_shutdown(void)
{
    SSL_CTX_free(server_ctx);
    server_ctx = NULL;
}
