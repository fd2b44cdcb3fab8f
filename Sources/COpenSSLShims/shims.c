#include "COpenSSLShims.h"

#include <openssl/crypto.h>
#include <openssl/opensslv.h>

_Static_assert(OPENSSL_VERSION_NUMBER >= 0x30000000L, "Tulip needs OpenSSL 3");

int tulip_SSL_CTX_set_min_proto_version(SSL_CTX *ctx, int version) {
    return (int)SSL_CTX_set_min_proto_version(ctx, version);
}

int tulip_SSL_set_tlsext_host_name(SSL *ssl, const char *name) {
    return (int)SSL_set_tlsext_host_name(ssl, name);
}

void tulip_OPENSSL_free(void *pointer) {
    OPENSSL_free(pointer);
}

void tulip_SSL_CTX_disable_compression_and_renegotiation(SSL_CTX *ctx) {
    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
}
