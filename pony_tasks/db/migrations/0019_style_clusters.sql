-- Style clusters (issue 16): k-means of CLIP image embeddings, versioned like aesthetic models. Cluster ids are
-- stable across versions: a new clustering's clusters are matched to the previous version's by shared images
-- (Hungarian assignment), so `style_cluster_17` keeps its meaning; an unmatched cluster gets an id never used before.

CREATE TABLE style_clustering (
    version_id           integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    embedding_model_id   integer     NOT NULL REFERENCES embedding_model,
    clusters             integer     NOT NULL CHECK (clusters >= 2),
    seed                 integer     NOT NULL,
    parameters           jsonb       NOT NULL,
    input_sha256         text        NOT NULL,            -- of the clustered image ids, model and parameters
    images               integer     NOT NULL,
    previous_version     integer     REFERENCES style_clustering,   -- the version its ids were matched to
    stability            jsonb       NOT NULL DEFAULT '{}',  -- vs previous_version: kept share, ARI, matched, new ids
    centroids_key        text        NOT NULL,            -- object-store key of the centroids (.npy, by cluster id)
    status               text        NOT NULL DEFAULT 'candidate' CHECK (status IN ('candidate', 'active', 'retired')),
    created_at           timestamptz NOT NULL DEFAULT now(),
    activated_at         timestamptz
);
CREATE UNIQUE INDEX style_clustering_one_active ON style_clustering ((status)) WHERE status = 'active';

CREATE TABLE style_cluster (
    version_id    integer NOT NULL REFERENCES style_clustering ON DELETE CASCADE,
    cluster_id    integer NOT NULL,                -- the stable id: style_cluster_<cluster_id>
    images        integer NOT NULL,
    matched_from  integer,                         -- the previous version's cluster it continues (NULL: new)
    shared        integer NOT NULL DEFAULT 0,      -- images it shares with that cluster
    PRIMARY KEY (version_id, cluster_id)
);

CREATE TABLE style_cluster_member (
    version_id   integer          NOT NULL REFERENCES style_clustering ON DELETE CASCADE,
    sha256       text             NOT NULL,
    cluster_id   integer          NOT NULL,
    similarity   real             NOT NULL,        -- cosine to the cluster's centroid
    PRIMARY KEY (version_id, sha256)
);

-- Captions record which clustering their style tags came from and how they were used.
ALTER TABLE caption_set
    ADD COLUMN style_version integer REFERENCES style_clustering,
    ADD COLUMN style_mode    text    NOT NULL DEFAULT 'off' CHECK (style_mode IN ('off', 'add', 'replace_artist'));
ALTER TABLE caption
    ADD COLUMN style_cluster integer;

CREATE OR REPLACE VIEW active_caption AS
    SELECT c.* FROM caption c JOIN active_caption_set a ON a.set_id = c.set_id;
