-- Works' embedding candidates found by mapped tasks (the works_build DAG, issue 28): a plan (its k-means cells are
-- in the object store under cells_key), one row per part (a pass of the cell join: one mapped task), and the pairs
-- each part found, which the linking task of the same plan reads. The plan is deleted once its works are linked.
CREATE TABLE works_plan (
    plan_key    text PRIMARY KEY,                            -- the Airflow run id, or a name an operator gives
    only_new    boolean NOT NULL,                            -- pairs with an image in no work yet (incremental)
    model_id    integer REFERENCES embedding_model ON DELETE CASCADE,  -- NULL: no usable embeddings
    embeddings  text NOT NULL,                               -- what the plan found of the embeddings
    cells_key   text,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE works_plan_part (
    plan_key    text NOT NULL REFERENCES works_plan ON DELETE CASCADE,
    part        integer NOT NULL,
    pairs       bigint,                                      -- NULL until the part has finished
    finished_at timestamptz,
    PRIMARY KEY (plan_key, part)
);
CREATE TABLE works_plan_pair (
    plan_key    text NOT NULL,
    part        integer NOT NULL,
    sha_a       text NOT NULL,                               -- sha_a < sha_b
    sha_b       text NOT NULL,
    cosine      real NOT NULL,
    FOREIGN KEY (plan_key, part) REFERENCES works_plan_part ON DELETE CASCADE
);
CREATE INDEX works_plan_pair_part ON works_plan_pair (plan_key, part);
