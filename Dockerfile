# One production image: the web app (gunicorn + whitenoise). The same image runs the
# Celery worker and beat with another command, e.g.
#   docker run IMAGE celery -A atlas_review worker -l info
#   docker run IMAGE celery -A atlas_review beat -l info
FROM python:3.13-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN groupadd --system app && useradd --system --gid app --home /app app
WORKDIR /app

# Dependencies first, so code changes do not reinstall them.
COPY pyproject.toml README.md ./
RUN mkdir atlas_review && touch atlas_review/__init__.py \
    && pip install . \
    && pip uninstall -y atlas-review \
    && rm -rf atlas_review

COPY manage.py ./
COPY atlas_review ./atlas_review
COPY templates ./templates
COPY static ./static

# collectstatic needs settings but no database; a throwaway key only for this step.
RUN SECRET_KEY=collectstatic-only-not-used-at-runtime-0123456789 \
    python manage.py collectstatic --noinput

USER app
EXPOSE 8000
# DATABASE_URL, CELERY_BROKER_URL, SECRET_KEY, ATLAS_* come from the environment.
CMD ["gunicorn", "atlas_review.wsgi", "--bind", "0.0.0.0:8000", "--workers", "3", "--access-logfile", "-"]
