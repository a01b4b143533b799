"""Sign-in through an OpenID provider: the gateway as a relying party (DESIGN 2.7)."""
