// A small C face over the system OpenSSL (Debian's libssl-dev) for the link: TLS 1.3
// only, on a non-blocking socket the Swift side polls. OpenSSL's own headers stay out of
// Swift (many of its calls are macros); everything here is a plain function.
#ifndef CTLS_H
#define CTLS_H

#include <stddef.h>
#include <stdint.h>

// Results of the I/O calls, beside a byte count (> 0) or 1 for a finished handshake.
#define CTLS_WANT_READ (-1)
#define CTLS_WANT_WRITE (-2)
#define CTLS_CLOSED (-3)
#define CTLS_ERROR (-4)

// A context for one side. `certificate` and `key` (PEM files) name the node's own
// identity; NULL for both makes an in-memory self-signed P-256 certificate (the default
// link: the peer is then authenticated by the secret-bound proof, not the certificate).
// `ca` (PEM) makes the peer's certificate required and verified against it. NULL and a
// message in `error` on failure.
void *ctls_context_new(int server, const char *certificate, const char *key, const char *ca, char *error,
                       size_t error_size);
void ctls_context_free(void *context);

// A connection over `fd` (already connected, non-blocking).
void *ctls_new(void *context, int fd, int server, char *error, size_t error_size);
void ctls_free(void *ssl);

int ctls_handshake(void *ssl);
int ctls_read(void *ssl, void *buffer, int count);
int ctls_write(void *ssl, const void *buffer, int count);
// 1 if the TLS layer holds bytes a read can use without the socket (decrypted, or taken
// off the socket and not yet processed), else 0.
int ctls_pending(void *ssl);
// 32 bytes of RFC 8446 exported keying material under the link's label: equal at both
// ends of one TLS connection and unknown to anyone else (a man in the middle has two).
int ctls_export(void *ssl, uint8_t *out, size_t count);
// The negotiated protocol ("TLSv1.3") and cipher, for messages.
const char *ctls_version(void *ssl);
const char *ctls_cipher(void *ssl);
// The reason for the last CTLS_ERROR on this thread (OpenSSL's error queue, or errno).
void ctls_last_error(char *error, size_t error_size);

#endif
