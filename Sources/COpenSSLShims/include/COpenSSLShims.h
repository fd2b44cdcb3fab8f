#ifndef TULIP_COPENSSL_SHIMS_H
#define TULIP_COPENSSL_SHIMS_H

#include <openssl/ssl.h>

#ifdef __cplusplus
extern "C" {
#endif

// SSL_CTX_set_min_proto_version is a macro over SSL_CTX_ctrl.
int tulip_SSL_CTX_set_min_proto_version(SSL_CTX *ctx, int version);

// SSL_set_tlsext_host_name is a macro over SSL_ctrl.
int tulip_SSL_set_tlsext_host_name(SSL *ssl, const char *name);

// SSL_OP_NO_COMPRESSION and SSL_OP_NO_RENEGOTIATION are SSL_OP_BIT() macros.
void tulip_SSL_CTX_disable_compression_and_renegotiation(SSL_CTX *ctx);

// OPENSSL_free is a macro over CRYPTO_free with file and line.
void tulip_OPENSSL_free(void *pointer);

#ifdef __cplusplus
}
#endif

#endif
