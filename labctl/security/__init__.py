"""The lab's production broker: vendor identities, PKI, access rules and Mosquitto config.

``labctl vendor add|list|revoke`` and ``labctl broker config|reload`` are built from these
modules. Each vendor gets a broker identity (a password over TLS, or a client certificate
signed by the lab CA whose CN is the username); the ACL lets a vendor write only its own
device-side topics and read only its own command requests, and never looks at client ids.
"""
