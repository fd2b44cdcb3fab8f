#ifndef TULIP_COPENSSL_SHIM_H
#define TULIP_COPENSSL_SHIM_H

#include <openssl/opensslv.h>
#include <openssl/ssl.h>
#include <openssl/err.h>
#include <openssl/bio.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#if OPENSSL_VERSION_NUMBER < 0x30000000L
#error "Tulip needs OpenSSL 3 (libssl-dev)"
#endif

#endif
