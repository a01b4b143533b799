"""The CDN in front: tags on publicly cacheable answers, and purges of those tags after writes."""
