#include "ctls.h"

#include <errno.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

static const char exporter_label[] = "EXPORTER-understudy-link";

static void describe_error(const char *what, char *error, size_t size) {
  unsigned long code = ERR_get_error();
  char detail[256];
  if (code != 0) {
    ERR_error_string_n(code, detail, sizeof detail);
  } else if (errno != 0) {
    snprintf(detail, sizeof detail, "%s", strerror(errno));
  } else {
    snprintf(detail, sizeof detail, "no detail");
  }
  ERR_clear_error();
  if (what && what[0]) {
    snprintf(error, size, "%s: %s", what, detail);
  } else {
    snprintf(error, size, "%s", detail);
  }
}

static int use_self_signed(SSL_CTX *ctx, char *error, size_t size) {
  EVP_PKEY *pkey = EVP_EC_gen("P-256");
  X509 *cert = X509_new();
  if (!pkey || !cert) goto fail;
  uint64_t serial = 0;
  RAND_bytes((unsigned char *)&serial, sizeof serial);
  ASN1_INTEGER_set_uint64(X509_get_serialNumber(cert), serial >> 1);
  X509_set_version(cert, 2);
  X509_gmtime_adj(X509_getm_notBefore(cert), -3600);
  X509_gmtime_adj(X509_getm_notAfter(cert), 3650L * 24 * 3600);
  X509_set_pubkey(cert, pkey);
  X509_NAME *name = X509_get_subject_name(cert);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"understudy link", -1, -1, 0);
  X509_set_issuer_name(cert, name);
  if (!X509_sign(cert, pkey, EVP_sha256())) goto fail;
  if (SSL_CTX_use_certificate(ctx, cert) != 1 || SSL_CTX_use_PrivateKey(ctx, pkey) != 1) goto fail;
  X509_free(cert);
  EVP_PKEY_free(pkey);
  return 1;
fail:
  describe_error("cannot make the link's self-signed certificate", error, size);
  X509_free(cert);
  EVP_PKEY_free(pkey);
  return 0;
}

void *ctls_context_new(int server, const char *certificate, const char *key, const char *ca, char *error,
                       size_t size) {
  ERR_clear_error();
  errno = 0;
  SSL_CTX *ctx = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
  if (!ctx) {
    describe_error("cannot create a TLS context", error, size);
    return NULL;
  }
  SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
  SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION);
  // One long-lived connection per backup: no resumption, so no tickets arrive
  // unasked between frames. A peer that drops the socket without close_notify is a
  // closed link like any other (frames carry their own length and checksum).
  SSL_CTX_set_num_tickets(ctx, 0);
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
  SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET | SSL_OP_IGNORE_UNEXPECTED_EOF);
  SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  if (certificate && key) {
    if (SSL_CTX_use_certificate_chain_file(ctx, certificate) != 1) {
      char what[512];
      snprintf(what, sizeof what, "cannot read the certificate %s", certificate);
      describe_error(what, error, size);
      goto fail;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1) {
      char what[1100];
      if (ERR_GET_REASON(ERR_peek_last_error()) == X509_R_KEY_VALUES_MISMATCH) {
        snprintf(what, sizeof what, "the private key %s does not belong to the certificate %s", key, certificate);
      } else {
        snprintf(what, sizeof what, "cannot read the private key %s", key);
      }
      describe_error(what, error, size);
      goto fail;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
      char what[1100];
      snprintf(what, sizeof what, "the private key %s does not belong to the certificate %s", key, certificate);
      describe_error(what, error, size);
      goto fail;
    }
  } else if (server) {
    if (!use_self_signed(ctx, error, size)) goto fail;
  }
  if (ca) {
    if (SSL_CTX_load_verify_locations(ctx, ca, NULL) != 1) {
      char what[512];
      snprintf(what, sizeof what, "cannot read the CA certificates %s", ca);
      describe_error(what, error, size);
      goto fail;
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
  } else {
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
  }
  return ctx;
fail:
  SSL_CTX_free(ctx);
  return NULL;
}

void ctls_context_free(void *context) { SSL_CTX_free((SSL_CTX *)context); }

// The socket under the TLS connection, written with MSG_NOSIGNAL: OpenSSL's own socket
// BIO uses write(2), and a write to a peer that is gone would raise SIGPIPE and kill the
// daemon, where the plain link gets EPIPE.
static int bio_write(BIO *bio, const char *data, int count) {
  int fd = (int)(intptr_t)BIO_get_data(bio);
  BIO_clear_retry_flags(bio);
  ssize_t n = send(fd, data, (size_t)count, MSG_NOSIGNAL);
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) BIO_set_retry_write(bio);
  return (int)n;
}

static int bio_read(BIO *bio, char *data, int count) {
  int fd = (int)(intptr_t)BIO_get_data(bio);
  BIO_clear_retry_flags(bio);
  ssize_t n = recv(fd, data, (size_t)count, 0);
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) BIO_set_retry_read(bio);
  return (int)n;
}

static long bio_ctrl(BIO *bio, int command, long number, void *pointer) {
  (void)bio;
  (void)number;
  (void)pointer;
  return command == BIO_CTRL_FLUSH ? 1 : 0;
}

static int bio_create(BIO *bio) {
  BIO_set_init(bio, 1);
  return 1;
}

static BIO_METHOD *made_method;
static void make_method(void) {
  BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "understudy socket");
  BIO_meth_set_write(m, bio_write);
  BIO_meth_set_read(m, bio_read);
  BIO_meth_set_ctrl(m, bio_ctrl);
  BIO_meth_set_create(m, bio_create);
  made_method = m;
}

void *ctls_new(void *context, int fd, int server, char *error, size_t size) {
  ERR_clear_error();
  static CRYPTO_ONCE once = CRYPTO_ONCE_STATIC_INIT;
  CRYPTO_THREAD_run_once(&once, make_method);
  SSL *ssl = SSL_new((SSL_CTX *)context);
  BIO *bio = made_method ? BIO_new(made_method) : NULL;
  if (!ssl || !bio) {
    describe_error("cannot start TLS", error, size);
    BIO_free(bio);
    SSL_free(ssl);
    return NULL;
  }
  BIO_set_data(bio, (void *)(intptr_t)fd);
  SSL_set_bio(ssl, bio, bio);
  if (server) {
    SSL_set_accept_state(ssl);
  } else {
    SSL_set_connect_state(ssl);
  }
  return ssl;
}

void ctls_free(void *ssl) {
  if (!ssl) return;
  // A close_notify if the socket takes it now; nobody waits for the answer.
  if (SSL_is_init_finished((SSL *)ssl)) SSL_shutdown((SSL *)ssl);
  ERR_clear_error();
  SSL_free((SSL *)ssl);
}

static int outcome(SSL *ssl, int result) {
  switch (SSL_get_error(ssl, result)) {
    case SSL_ERROR_WANT_READ: return CTLS_WANT_READ;
    case SSL_ERROR_WANT_WRITE: return CTLS_WANT_WRITE;
    case SSL_ERROR_ZERO_RETURN: return CTLS_CLOSED;
    case SSL_ERROR_SYSCALL:
      // The peer went away (end of file, reset, broken pipe): a closed link, not a
      // TLS failure.
      if (ERR_peek_error() == 0 && (errno == 0 || errno == ECONNRESET || errno == EPIPE || errno == ENOTCONN)) {
        return CTLS_CLOSED;
      }
      return CTLS_ERROR;
    default: return CTLS_ERROR;
  }
}

int ctls_handshake(void *ssl) {
  ERR_clear_error();
  errno = 0;
  int r = SSL_do_handshake((SSL *)ssl);
  return r == 1 ? 1 : outcome((SSL *)ssl, r);
}

int ctls_read(void *ssl, void *buffer, int count) {
  ERR_clear_error();
  errno = 0;
  int r = SSL_read((SSL *)ssl, buffer, count);
  return r > 0 ? r : outcome((SSL *)ssl, r);
}

int ctls_write(void *ssl, const void *buffer, int count) {
  ERR_clear_error();
  errno = 0;
  int r = SSL_write((SSL *)ssl, buffer, count);
  return r > 0 ? r : outcome((SSL *)ssl, r);
}

// Whether a read can make progress without the socket: decrypted bytes of the current
// record (SSL_pending) or record bytes OpenSSL already took off the socket and has not
// processed yet (SSL_has_pending). Polling the socket while either is true can wait for
// bytes that have already arrived.
int ctls_pending(void *ssl) { return SSL_pending((SSL *)ssl) > 0 || SSL_has_pending((SSL *)ssl); }

int ctls_export(void *ssl, uint8_t *out, size_t count) {
  return SSL_export_keying_material((SSL *)ssl, out, count, exporter_label, sizeof exporter_label - 1, NULL, 0, 0);
}

const char *ctls_version(void *ssl) { return SSL_get_version((SSL *)ssl); }

const char *ctls_cipher(void *ssl) { return SSL_get_cipher_name((SSL *)ssl); }

void ctls_last_error(char *error, size_t size) { describe_error("", error, size); }
